use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

use super::*;
use crate::session::tests::session_config;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_000;

fn cookies() -> SessionCookies {
    SessionCookies::new(&session_config(SECRET, &[]))
}

fn flow(state: &str) -> Flow {
    Flow {
        state: state.into(),
        nonce: "nonce-1".into(),
        pkce_verifier: "verifier-1".into(),
        provider: "idp".into(),
        rd: "/app?x=1".into(),
        created_at: NOW,
    }
}

/// The request a browser sends back after `set_cookies` (name=value pairs only).
fn request_with(set_cookies: &[&HeaderValue]) -> HeaderMap {
    let pairs: Vec<&str> = set_cookies
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap())
        .collect();
    let mut h = HeaderMap::new();
    h.insert(COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
    h
}

fn name_of(set_cookie: &HeaderValue) -> &str {
    set_cookie.to_str().unwrap().split('=').next().unwrap()
}

#[test]
fn start_then_take_returns_the_flow_and_deletes_its_cookie() {
    let c = cookies();
    let f = flow("state-a");
    let set = c.start_flow(&f);
    let name = c.flow_cookie_name("state-a");
    assert_eq!(name_of(&set), name);
    assert!(name.starts_with("_portcullis_flow_"));
    assert_eq!(name.len(), "_portcullis_flow_".len() + 16);
    let attrs = set.to_str().unwrap().split_once(';').unwrap().1;
    assert_eq!(
        attrs,
        " Path=/oauth2/; Max-Age=600; HttpOnly; Secure; SameSite=Lax"
    );

    let (taken, deletion) = c.take_flow(&request_with(&[&set]), "state-a", NOW + 599);
    assert_eq!(taken, Ok(f));
    assert_eq!(
        deletion.to_str().unwrap(),
        format!(
            "{name}=; Path=/oauth2/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax"
        )
    );
}

#[test]
fn flow_cookie_is_lax_even_when_sessions_are_strict() {
    let mut config = session_config(SECRET, &[]);
    config.same_site = crate::config::SameSite::Strict;
    config.secure = false;
    config.domain = Some("example.com".into());
    let set = SessionCookies::new(&config).start_flow(&flow("s"));
    let set = set.to_str().unwrap();
    assert!(
        set.ends_with("; Path=/oauth2/; Max-Age=600; HttpOnly; SameSite=Lax"),
        "{set}"
    );
}

#[test]
fn two_tabs_keep_their_own_flows() {
    let c = cookies();
    let a = c.start_flow(&flow("tab-a"));
    let b = c.start_flow(&flow("tab-b"));
    assert_ne!(name_of(&a), name_of(&b));
    let request = request_with(&[&a, &b]);
    assert_eq!(c.take_flow(&request, "tab-b", NOW).0, Ok(flow("tab-b")));
    assert_eq!(c.take_flow(&request, "tab-a", NOW).0, Ok(flow("tab-a")));
}

#[test]
fn a_flow_is_taken_once() {
    let c = cookies();
    let request = request_with(&[&c.start_flow(&flow("once"))]);
    assert!(c.take_flow(&request, "once", NOW).0.is_ok());
    let (again, deletion) = c.take_flow(&request, "once", NOW);
    assert_eq!(again, Err(FlowError::Replayed));
    assert!(deletion.to_str().unwrap().contains("Max-Age=0"));
}

#[test]
fn missing_invalid_and_expired_flows_are_refused() {
    let c = cookies();
    let set = c.start_flow(&flow("s1"));
    let request = request_with(&[&set]);

    assert_eq!(
        c.take_flow(&HeaderMap::new(), "s1", NOW).0,
        Err(FlowError::Missing)
    );
    assert_eq!(
        c.take_flow(&request, "other-state", NOW).0,
        Err(FlowError::Missing)
    );
    assert_eq!(
        c.take_flow(&request, "s1", NOW + 601).0,
        Err(FlowError::Expired)
    );

    let name = c.flow_cookie_name("s1");
    let mut bad = HeaderMap::new();
    bad.insert(
        COOKIE,
        HeaderValue::from_str(&format!("{name}=AAAAAAAA")).unwrap(),
    );
    assert_eq!(c.take_flow(&bad, "s1", NOW).0, Err(FlowError::Invalid));

    let foreign = SessionCookies::new(&session_config("ffffffffffffffffffffffffffffffff", &[]));
    let from_elsewhere = request_with(&[&foreign.start_flow(&flow("s1"))]);
    assert_eq!(
        c.take_flow(&from_elsewhere, "s1", NOW).0,
        Err(FlowError::Invalid)
    );

    // A sealed value that is not a Flow.
    let not_a_flow = c.keys.seal(&name, b"{\"state\":\"s1\"}");
    bad.insert(
        COOKIE,
        HeaderValue::from_str(&format!("{name}={not_a_flow}")).unwrap(),
    );
    assert_eq!(c.take_flow(&bad, "s1", NOW).0, Err(FlowError::Invalid));
}

#[test]
fn an_expired_or_failed_take_does_not_burn_the_state() {
    let c = cookies();
    let request = request_with(&[&c.start_flow(&flow("s2"))]);
    assert_eq!(
        c.take_flow(&request, "s2", NOW + 601).0,
        Err(FlowError::Expired)
    );
    assert!(c.take_flow(&request, "s2", NOW).0.is_ok());
}

#[test]
fn state_inside_the_cookie_must_match_the_callback() {
    let c = cookies();
    let name = c.flow_cookie_name("callback-state");
    let json = serde_json::to_vec(&flow("some-other-state")).unwrap();
    let value = c.keys.seal(&name, &json);
    let mut h = HeaderMap::new();
    h.insert(
        COOKIE,
        HeaderValue::from_str(&format!("{name}={value}")).unwrap(),
    );
    assert_eq!(
        c.take_flow(&h, "callback-state", NOW).0,
        Err(FlowError::StateMismatch)
    );
}

#[test]
fn a_flow_value_cannot_move_to_another_flow_name() {
    let c = cookies();
    let set = c.start_flow(&flow("real"));
    let value = set
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1;
    let other_name = c.flow_cookie_name("attacker");
    let mut h = HeaderMap::new();
    h.insert(
        COOKIE,
        HeaderValue::from_str(&format!("{other_name}={value}")).unwrap(),
    );
    assert_eq!(c.take_flow(&h, "attacker", NOW).0, Err(FlowError::Invalid));
}

#[test]
fn a_stale_duplicate_does_not_hide_the_real_flow() {
    let c = cookies();
    let set = c.start_flow(&flow("dup"));
    let name = c.flow_cookie_name("dup");
    let real = set.to_str().unwrap().split(';').next().unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        COOKIE,
        HeaderValue::from_str(&format!("{name}=garbage; {real}")).unwrap(),
    );
    assert_eq!(c.take_flow(&h, "dup", NOW).0, Ok(flow("dup")));
}

#[test]
fn clear_flows_deletes_each_flow_cookie_once() {
    let c = cookies();
    let a = c.start_flow(&flow("a"));
    let b = c.start_flow(&flow("b"));
    let mut request = request_with(&[&a, &b, &a]);
    request.append(
        COOKIE,
        HeaderValue::from_static("_portcullis=x; theme=dark"),
    );
    let cleared = c.clear_flows(&request);
    let mut names: Vec<&str> = cleared.iter().map(name_of).collect();
    names.sort();
    let mut expected = [name_of(&a), name_of(&b)];
    expected.sort();
    assert_eq!(names, expected);
    for v in &cleared {
        assert!(v.to_str().unwrap().contains("=; Path=/oauth2/; Max-Age=0;"));
    }
    assert!(c.clear_flows(&HeaderMap::new()).is_empty());
}

#[test]
fn flow_cookies_are_own_cookies_and_stripped() {
    let c = cookies();
    let set = c.start_flow(&flow("x"));
    assert!(c.is_own_cookie(name_of(&set)));
    let mut h = request_with(&[&set]);
    h.append(COOKIE, HeaderValue::from_static("app=1"));
    c.strip_own_cookies(&mut h);
    assert_eq!(h.get(COOKIE).unwrap(), "app=1");
}

#[test]
fn debug_output_hides_the_secrets() {
    let printed = format!("{:?}", flow("the-state"));
    assert!(!printed.contains("the-state"));
    assert!(!printed.contains("nonce-1"));
    assert!(!printed.contains("verifier-1"));
    assert!(printed.contains("/app?x=1"));
}

#[test]
fn making_room_for_a_flow_deletes_all_but_the_newest_four() {
    let c = cookies();
    let started = |state: &str, age: u64| {
        c.start_flow(&Flow {
            created_at: NOW - age,
            ..flow(state)
        })
    };
    // Sent in no order of age, with a look-alike that does not open.
    let set = [
        started("three", 3),
        started("one", 1),
        started("five", 5),
        started("zero", 0),
        started("four", 4),
        started("two", 2),
    ];
    let junk = HeaderValue::from_static("_portcullis_flow_0123456789abcdef=junk");
    let mut sent: Vec<&HeaderValue> = set.iter().collect();
    sent.insert(2, &junk);
    let deleted: Vec<String> = c
        .make_room_for_flow(&request_with(&sent))
        .iter()
        .map(|d| {
            assert!(d.to_str().unwrap().contains("Max-Age=0; "), "{d:?}");
            name_of(d).to_owned()
        })
        .collect();
    let name = |state| c.flow_cookie_name(state);
    assert_eq!(
        deleted,
        [
            "_portcullis_flow_0123456789abcdef".to_owned(),
            name("five"),
            name("four")
        ]
    );
    let four: Vec<&HeaderValue> = set[..4].iter().collect();
    assert!(c.make_room_for_flow(&request_with(&four)).is_empty());
}
