use std::collections::BTreeMap;
use std::time::Duration;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

use super::*;
use crate::identity::Identity;
use crate::session::Tokens;
use crate::session::tests::session_config;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_000;

fn store() -> SessionCookies {
    SessionCookies::new(&session_config(SECRET, &[]))
}

fn store_with(edit: impl FnOnce(&mut SessionConfig)) -> SessionCookies {
    let mut config = session_config(SECRET, &[]);
    edit(&mut config);
    SessionCookies::new(&config)
}

fn session(padding: usize) -> Session {
    Session {
        id: crate::session::new_session_id(),
        provider: "idp".into(),
        identity: Identity {
            sub: "user-1".into(),
            email: Some("ada@example.com".into()),
            email_verified: Some(true),
            name: Some("Ada".into()),
            preferred_username: None,
            groups: vec!["admins".into()],
            extra: BTreeMap::new(),
            added: Default::default(),
        },
        tokens: Tokens {
            access_token: Some("a".repeat(padding)),
            refresh_token: Some("refresh".into()),
            id_token: None,
            access_expires_at: Some(NOW + 300),
        },
        created_at: NOW - 10,
        expires_at: NOW + 3600,
        last_seen_at: NOW - 10,
        sid: None,
        refreshed_at: 0,
    }
}

/// The `Cookie` header a browser would send back after `set_cookies`.
fn browser_sends(set_cookies: &[HeaderValue]) -> HeaderMap {
    let pairs: Vec<&str> = set_cookies
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap())
        .filter(|pair| !pair.ends_with('='))
        .collect();
    cookie_header(&pairs.join("; "))
}

fn cookie_header(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(COOKIE, HeaderValue::from_str(value).unwrap());
    h
}

/// `name=value` pairs of a request's cookies, as a list.
fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    cookie_pairs(headers)
        .map(|p| {
            (
                String::from_utf8(p.name.to_vec()).unwrap(),
                String::from_utf8(p.value.to_vec()).unwrap(),
            )
        })
        .collect()
}

fn header_from(pairs: &[(String, String)]) -> HeaderMap {
    let joined: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
    cookie_header(&joined.join("; "))
}

/// Names deleted by these Set-Cookie values.
fn deleted(values: &[HeaderValue]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.to_str().unwrap())
        .filter(|v| v.contains("Max-Age=0"))
        .map(|v| v.split('=').next().unwrap().to_owned())
        .collect()
}

#[test]
fn small_session_roundtrips_in_one_cookie() {
    let s = store();
    let sess = session(10);
    let set = s.store_at(&sess, &HeaderMap::new(), NOW).unwrap();
    assert_eq!(set.len(), 1);
    let loaded = s.load(&browser_sends(&set), NOW);
    assert_eq!(loaded.session.as_deref().map(|o| &o.session), Some(&sess));
    assert!(loaded.clear.is_empty());
}

#[test]
fn attributes_follow_config() {
    let cookie = store()
        .store_at(&session(10), &HeaderMap::new(), NOW)
        .unwrap();
    let cookie = cookie[0].to_str().unwrap();
    assert!(cookie.starts_with("_portcullis="));
    assert!(
        cookie.ends_with("; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Lax"),
        "{cookie}"
    );

    let s = store_with(|c| {
        c.secure = false;
        c.same_site = SameSite::Strict;
        c.domain = Some(".example.com".into());
    });
    let cookie = s.store_at(&session(10), &HeaderMap::new(), NOW).unwrap();
    let cookie = cookie[0].to_str().unwrap();
    assert!(
        cookie.ends_with("; Path=/; Domain=.example.com; Max-Age=3600; HttpOnly; SameSite=Strict"),
        "{cookie}"
    );
}

#[test]
fn large_session_is_chunked_under_the_cookie_limit() {
    let s = store_with(|c| c.domain = Some("app.example.com".into()));
    let sess = session(9000);
    let set = s.store_at(&sess, &HeaderMap::new(), NOW).unwrap();
    assert!(set.len() >= 3, "{} chunks", set.len());
    for (i, v) in set.iter().enumerate() {
        assert!(
            v.len() < MAX_SET_COOKIE_LEN,
            "chunk {i} is {} bytes",
            v.len()
        );
        let expected = if i == 0 {
            "_portcullis=".to_owned()
        } else {
            format!("_portcullis_{i}=")
        };
        assert!(v.to_str().unwrap().starts_with(&expected));
    }
    assert_eq!(
        s.load(&browser_sends(&set), NOW)
            .session
            .as_deref()
            .map(|o| &o.session),
        Some(&sess)
    );

    // Browsers may send cookies in any order, and over several headers.
    let mut p = pairs(&browser_sends(&set));
    p.reverse();
    let mut split = HeaderMap::new();
    for (n, v) in &p {
        split.append(COOKIE, HeaderValue::from_str(&format!("{n}={v}")).unwrap());
    }
    assert_eq!(
        s.load(&split, NOW).session.as_deref().map(|o| &o.session),
        Some(&sess)
    );
}

#[test]
fn bad_chunk_sets_mean_no_session_and_clear_what_was_sent() {
    let s = store();
    let set = s.store_at(&session(9000), &HeaderMap::new(), NOW).unwrap();
    let good = pairs(&browser_sends(&set));
    assert!(good.len() >= 3);
    let other = ("theme".to_owned(), "dark".to_owned());

    let missing_first: Vec<_> = good[1..].to_vec();
    let missing_middle: Vec<_> = [&good[..1], &good[2..]].concat();
    let missing_last: Vec<_> = good[..good.len() - 1].to_vec();
    let mut duplicated = good.clone();
    duplicated.push(good[1].clone());
    let mut duplicate_differs = good.clone();
    duplicate_differs.push((good[1].0.clone(), "AAAA".into()));
    let mut surplus = good.clone();
    surplus.push((format!("_portcullis_{}", good.len()), "AAAA".into()));
    let mut gap = good.clone();
    gap.push((format!("_portcullis_{}", good.len() + 1), "AAAA".into()));
    let mut swapped = good.clone();
    let (a, b) = (swapped[0].1.clone(), swapped[1].1.clone());
    swapped[0].1 = b;
    swapped[1].1 = a;
    let mut leading_zero = good.clone();
    leading_zero[1].0 = "_portcullis_01".into();
    let mut too_many = good.clone();
    for i in good.len()..=MAX_CHUNKS {
        too_many.push((format!("_portcullis_{i}"), "AAAA".into()));
    }
    let mut tampered = good.clone();
    let flipped = if tampered[1].1.starts_with('A') {
        "B"
    } else {
        "A"
    };
    tampered[1].1.replace_range(0..1, flipped);
    let mut truncated = good.clone();
    truncated.last_mut().unwrap().1.pop();

    let cases = [
        ("missing first", missing_first),
        ("missing middle", missing_middle),
        ("missing last", missing_last),
        ("duplicated", duplicated),
        ("duplicate differs", duplicate_differs),
        ("surplus", surplus),
        ("gap", gap),
        ("swapped", swapped),
        ("leading zero", leading_zero),
        ("too many", too_many),
        ("tampered", tampered),
        ("truncated", truncated),
    ];
    for (what, mut sent) in cases {
        sent.push(other.clone());
        let loaded = s.load(&header_from(&sent), NOW);
        assert_eq!(loaded.session, None, "{what}");
        let mut expected: Vec<String> = sent
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| n.starts_with("_portcullis"))
            .collect();
        expected.dedup();
        let mut got = deleted(&loaded.clear);
        got.sort();
        expected.sort();
        expected.dedup();
        assert_eq!(got, expected, "{what}");
        for v in &loaded.clear {
            assert!(v.to_str().unwrap().contains("; Path=/;"), "{what}");
        }
    }
}

#[test]
fn foreign_secret_expired_and_idle_sessions_are_refused() {
    let s = store();
    let foreign = SessionCookies::new(&session_config("ffffffffffffffffffffffffffffffff", &[]));
    let sess = session(10);
    let from_elsewhere = browser_sends(&foreign.store_at(&sess, &HeaderMap::new(), NOW).unwrap());
    let loaded = s.load(&from_elsewhere, NOW);
    assert_eq!(loaded.session, None);
    assert_eq!(deleted(&loaded.clear), ["_portcullis"]);

    // The second load is answered from the opened-session cache: expiry and
    // idleness are checked all the same.
    let sent = browser_sends(&s.store_at(&sess, &HeaderMap::new(), NOW).unwrap());
    assert!(s.load(&sent, sess.expires_at - 1).session.is_some());
    let expired = s.load(&sent, sess.expires_at);
    assert_eq!(expired.session, None);
    assert_eq!(deleted(&expired.clear), ["_portcullis"]);

    let idle = store_with(|c| c.idle_timeout = Some(Duration::from_secs(600)));
    let sent = browser_sends(&idle.store_at(&sess, &HeaderMap::new(), NOW).unwrap());
    assert!(idle.load(&sent, sess.last_seen_at + 600).session.is_some());
    let timed_out = idle.load(&sent, sess.last_seen_at + 601);
    assert_eq!(timed_out.session, None);
    assert_eq!(deleted(&timed_out.clear), ["_portcullis"]);
}

#[test]
fn an_opened_session_is_reused_only_for_the_exact_same_value() {
    let s = store();
    let sess = session(10);
    let sent = browser_sends(&s.store_at(&sess, &HeaderMap::new(), NOW).unwrap());
    let first = s.load(&sent, NOW).session.unwrap();
    let again = s.load(&sent, NOW).session.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "the second load opens nothing");

    // Any other value, even one byte away from a cached one, is opened (and
    // refused) on its own.
    let value = sent.get(COOKIE).unwrap().to_str().unwrap().to_owned();
    for (i, flipped) in [
        (value.len() - 1, 'A'),
        (value.len() - 1, 'B'),
        (20, 'x'),
        (20, 'y'),
    ] {
        let mut forged = value.clone();
        forged.replace_range(i..=i, &flipped.to_string());
        if forged == value {
            continue;
        }
        let loaded = s.load(&cookie_header(&forged), NOW);
        assert_eq!(loaded.session, None, "{forged}");
        assert_eq!(deleted(&loaded.clear), ["_portcullis"]);
    }
    let truncated = &value[..value.len() - 1];
    assert_eq!(s.load(&cookie_header(truncated), NOW).session, None);
    assert!(s.load(&sent, NOW).session.is_some());
}

#[test]
fn previous_secret_still_loads() {
    let old_secret = "an older secret of at least 32 bytes!";
    let old = SessionCookies::new(&session_config(old_secret, &[]));
    let rotated = SessionCookies::new(&session_config(SECRET, &[old_secret]));
    let sess = session(10);
    let sent = browser_sends(&old.store_at(&sess, &HeaderMap::new(), NOW).unwrap());
    assert_eq!(
        rotated
            .load(&sent, NOW)
            .session
            .as_deref()
            .map(|o| &o.session),
        Some(&sess)
    );
}

#[test]
fn a_value_from_another_cookie_name_does_not_load() {
    let s = store();
    let other_name = store_with(|c| c.cookie_name = "_other".into());
    let set = other_name
        .store_at(&session(10), &HeaderMap::new(), NOW)
        .unwrap();
    let value = set[0]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("_other=");
    let loaded = s.load(&cookie_header(&format!("_portcullis={value}")), NOW);
    assert_eq!(loaded.session, None);
}

#[test]
fn malformed_cookie_headers_never_panic() {
    let s = store();
    let weird = [
        "",
        ";",
        ";;;",
        "=",
        "_portcullis",
        "_portcullis=",
        "_portcullis==",
        "=_portcullis",
        "_portcullis=\"quoted\"",
        "_portcullis_=x",
        "_portcullis_1=x",
        "_portcullis_99999999999999999999999=x",
        "_portcullis=%00%ff",
        "_portcullis=x; _portcullis=y",
        "  _portcullis  =  x  ;  ",
        "a=b; c",
    ];
    for w in weird {
        let loaded = s.load(&cookie_header(w), NOW);
        assert_eq!(loaded.session, None, "{w:?}");
    }
    let mut binary = HeaderMap::new();
    binary.insert(
        COOKIE,
        HeaderValue::from_bytes(b"_portcullis=\xff\xfe; x=\x80").unwrap(),
    );
    let loaded = s.load(&binary, NOW);
    assert_eq!(loaded.session, None);
    assert_eq!(deleted(&loaded.clear), ["_portcullis"]);
    assert!(s.load(&HeaderMap::new(), NOW).clear.is_empty());
    assert!(s.load(&cookie_header("theme=dark"), NOW).clear.is_empty());
}

#[test]
fn store_deletes_chunks_the_new_session_no_longer_needs() {
    let s = store();
    let big = s.store_at(&session(9000), &HeaderMap::new(), NOW).unwrap();
    let request = browser_sends(&big);
    let small = s.store_at(&session(10), &request, NOW).unwrap();
    assert!(small[0].to_str().unwrap().starts_with("_portcullis="));
    assert!(!small[0].to_str().unwrap().contains("Max-Age=0"));
    let mut expected: Vec<String> = (1..big.len()).map(|i| format!("_portcullis_{i}")).collect();
    expected.sort();
    let mut got = deleted(&small);
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(small.len(), big.len());
}

#[test]
fn store_of_an_expired_session_expires_the_cookie() {
    let mut sess = session(10);
    sess.expires_at = NOW - 1;
    let set = store().store_at(&sess, &HeaderMap::new(), NOW).unwrap();
    assert!(set[0].to_str().unwrap().contains("Max-Age=0;"));
}

#[test]
fn clear_deletes_every_chunk_and_always_the_base() {
    let s = store_with(|c| c.domain = Some("example.com".into()));
    let none = s.clear(&HeaderMap::new());
    assert_eq!(deleted(&none), ["_portcullis"]);
    assert!(
        none[0]
            .to_str()
            .unwrap()
            .contains("; Path=/; Domain=example.com; Max-Age=0;")
    );

    let only_chunks = s.clear(&cookie_header(
        "_portcullis_2=x; theme=dark; _portcullis_1=y",
    ));
    assert_eq!(
        deleted(&only_chunks),
        ["_portcullis", "_portcullis_2", "_portcullis_1"]
    );
}

#[test]
fn own_cookies_are_recognised() {
    let s = store();
    for own in [
        "_portcullis",
        "_portcullis_1",
        "_portcullis_12",
        "_portcullis_flow_0123456789abcdef",
    ] {
        assert!(s.is_own_cookie(own), "{own}");
    }
    for other in [
        "",
        "_portcullis_",
        "_portcullisx",
        "_portcullis_x",
        "_portcullis_flow_",
        "_portcullis_flow_0123456789ABCDEF",
        "_portcullis_flow_0123456789abcdef0",
        "x_portcullis",
        "_PORTCULLIS",
        "session",
    ] {
        assert!(!s.is_own_cookie(other), "{other}");
    }
}

#[test]
fn strip_keeps_other_cookies_byte_for_byte() {
    let s = store();
    let cases = [
        ("_portcullis=abc", None),
        ("_portcullis=abc; _portcullis_1=def", None),
        ("a=1; _portcullis=abc; b=2", Some("a=1; b=2")),
        (
            "a=\"q u o\"; _portcullis_flow_0123456789abcdef=x;b=%20;",
            Some("a=\"q u o\"; b=%20"),
        ),
        ("lonely; _portcullis=abc; =odd", Some("lonely; =odd")),
        ("_portcullis_x=1; _portcullis=2", Some("_portcullis_x=1")),
    ];
    for (sent, expected) in cases {
        let mut h = cookie_header(sent);
        h.insert("x-other", HeaderValue::from_static("kept"));
        s.strip_own_cookies(&mut h);
        assert_eq!(
            h.get(COOKIE).map(|v| v.to_str().unwrap()),
            expected,
            "{sent:?}"
        );
        assert_eq!(
            h.get_all(COOKIE).iter().count(),
            usize::from(expected.is_some())
        );
        assert_eq!(h.get("x-other").unwrap(), "kept");
    }
}

#[test]
fn strip_joins_several_cookie_headers_with_or_without_own_ones() {
    let s = store();
    let mut h = HeaderMap::new();
    h.append(COOKIE, HeaderValue::from_static("a=1"));
    h.append(COOKIE, HeaderValue::from_static("_portcullis=x"));
    h.append(COOKIE, HeaderValue::from_static("b=2; _portcullis_1=y"));
    s.strip_own_cookies(&mut h);
    assert_eq!(h.get_all(COOKIE).iter().collect::<Vec<_>>(), ["a=1; b=2"]);

    // HTTP/2 cookie fields, none of them portcullis': still one header for
    // the HTTP/1.1 upstream (RFC 9113 §8.2.3).
    let mut foreign = HeaderMap::new();
    foreign.append(COOKIE, HeaderValue::from_static("a=1 ;  b=2"));
    foreign.append(COOKIE, HeaderValue::from_static("c=3"));
    s.strip_own_cookies(&mut foreign);
    assert_eq!(
        foreign.get_all(COOKIE).iter().collect::<Vec<_>>(),
        ["a=1; b=2; c=3"]
    );

    // One foreign header is left as it was, byte for byte.
    let mut untouched = cookie_header("a=1 ;  b=2");
    let before = untouched.clone();
    s.strip_own_cookies(&mut untouched);
    assert_eq!(untouched, before);
}

#[test]
fn a_request_stuffed_with_look_alike_names_gets_a_bounded_answer() {
    let store = store();
    // The real base cookie last, behind a thousand look-alikes.
    let mut sent: Vec<String> = (100..1000).map(|i| format!("_portcullis_{i}=x")).collect();
    sent.push("_portcullis_1234567=x".into());
    sent.push("_portcullis=garbage".into());
    let loaded = store.load(&cookie_header(&sent.join("; ")), NOW);
    assert!(loaded.session.is_none());
    assert_eq!(loaded.clear.len(), MAX_DELETIONS);
    // What portcullis writes goes first; a name it could never write is not its own.
    assert!(
        loaded.clear[0]
            .to_str()
            .unwrap()
            .starts_with("_portcullis=;")
    );
    assert!(
        !loaded
            .clear
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("_portcullis_1234567="))
    );
}

#[test]
fn a_session_too_large_to_read_back_is_not_written() {
    let s = store();
    let too_large = s.store_at(&session(200_000), &HeaderMap::new(), NOW);
    assert!(too_large.is_err(), "written though it could never load");
}

#[test]
fn a_host_prefixed_session_keeps_the_prefix_everywhere() {
    let s = store_with(|c| c.cookie_name = "__Host-_portcullis".into());
    let set = s.store_at(&session(10), &HeaderMap::new(), NOW).unwrap();
    let cookie = set[0].to_str().unwrap();
    // __Host-: Secure, Path=/ and no Domain, or browsers drop it.
    assert!(cookie.starts_with("__Host-_portcullis="), "{cookie}");
    assert!(
        cookie.contains("; Path=/;") && cookie.contains("; Secure"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain="), "{cookie}");
    let loaded = s.load(&browser_sends(&set), NOW);
    assert!(loaded.session.is_some());

    // Chunks carry the prefix too.
    let big = s.store_at(&session(9000), &HeaderMap::new(), NOW).unwrap();
    assert!(big.len() > 1);
    assert!(
        big.iter()
            .all(|c| c.to_str().unwrap().starts_with("__Host-_portcullis"))
    );
    assert!(s.load(&browser_sends(&big), NOW).session.is_some());

    // Flow cookies live under /oauth2/, where __Host- is not allowed: __Secure-.
    let flow = s.flow_cookie_name("state");
    assert!(flow.starts_with("__Secure-_portcullis_flow_"), "{flow}");
    assert!(s.is_own_cookie(&flow));

    // Kept from the upstream: every name portcullis writes, and the
    // unprefixed session cookie of older versions.
    let mut h = cookie_header(&format!(
        "a=1; __Host-_portcullis=x; __Host-_portcullis_1=y; {flow}=z; _portcullis=old; _portcullis_1=old"
    ));
    s.strip_own_cookies(&mut h);
    assert_eq!(h.get(COOKIE).unwrap(), "a=1");
    // A sibling's cookie of the unprefixed name opens no session.
    assert!(
        s.load(&cookie_header("_portcullis=x"), NOW)
            .session
            .is_none()
    );
}

#[test]
fn a_redis_handle_is_one_cookie_and_replaces_cookie_store_chunks() {
    let c = store();
    // Left from the cookie store: a session in several chunks.
    let left = c.store_at(&session(9000), &HeaderMap::new(), NOW).unwrap();
    let carried = browser_sends(&left);
    let chunks: Vec<String> = pairs(&carried)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name != "_portcullis")
        .collect();
    assert!(chunks.len() >= 2, "{chunks:?}");
    let set = c.store_handle("the-handle", 3600, &carried);
    let first = set[0].to_str().unwrap();
    assert!(
        first.starts_with("_portcullis=the-handle; Path=/; Max-Age=3600; HttpOnly"),
        "{first}"
    );
    assert_eq!(deleted(&set), chunks);
    let sent = browser_sends(&set);
    assert_eq!(c.carried_handle(&sent), Some(Some(&b"the-handle"[..])));
}

#[test]
fn only_one_plain_session_cookie_is_taken_as_a_handle() {
    let c = store();
    assert_eq!(c.carried_handle(&HeaderMap::new()), None);
    assert_eq!(c.carried_handle(&cookie_header("other=1")), None);
    for not_a_handle in [
        "_portcullis=a; _portcullis_1=b",
        "_portcullis_1=b",
        "_portcullis=a; _portcullis=b",
    ] {
        assert_eq!(
            c.carried_handle(&cookie_header(not_a_handle)),
            Some(None),
            "{not_a_handle}"
        );
    }
}
