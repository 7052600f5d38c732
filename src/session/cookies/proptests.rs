//! Properties of the session cookie codec, chunk joining and the `Cookie`
//! header scanner (issue #10 item 9, DESIGN §8.10): a sealed session always
//! opens, however the browser orders and splits its cookies; no set of chunks,
//! reordered, duplicated, missing, surplus, moved, mutated or made up, opens a
//! session that was not sealed; the scanner reads exactly the pairs a header
//! holds; and portcullis' own cookies never reach the upstream.

use std::collections::BTreeMap;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use proptest::sample::Index;

use super::*;
use crate::identity::Identity;
use crate::session::Tokens;
use crate::session::tests::session_config;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const OTHER_SECRET: &str = "ffffffffffffffffffffffffffffffff";
const NOW: u64 = 1_700_000_000;

fn store() -> SessionCookies {
    SessionCookies::new(&session_config(SECRET, &[]))
}

/// Sessions of one to four chunks, with any text in their claims.
fn session() -> impl Strategy<Value = Session> {
    (
        "\\PC{1,16}",
        proptest::option::of(any::<String>()),
        proptest::collection::vec("\\PC{0,8}", 0..3),
        prop_oneof![2 => 0usize..64, 1 => 3_000usize..9_000],
    )
        .prop_map(|(sub, name, groups, padding)| Session {
            id: crate::session::new_session_id(),
            provider: "idp".into(),
            identity: Identity {
                sub,
                email: Some("ada@example.com".into()),
                email_verified: Some(true),
                name,
                preferred_username: None,
                groups,
                extra: BTreeMap::new(),
                added: Default::default(),
            },
            tokens: Tokens {
                access_token: Some("t".repeat(padding)),
                refresh_token: None,
                id_token: None,
                access_expires_at: None,
            },
            created_at: NOW - 10,
            expires_at: NOW + 3600,
            last_seen_at: NOW - 10,
            sid: None,
            refreshed_at: 0,
        })
}

/// The `name=value` pairs a browser keeps from these Set-Cookie values.
fn kept_pairs(set_cookies: &[HeaderValue]) -> Vec<(String, String)> {
    set_cookies
        .iter()
        .filter_map(|v| {
            let pair = v.to_str().ok()?.split(';').next()?;
            let (name, value) = pair.split_once('=')?;
            (!value.is_empty()).then(|| (name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Other cookies of the site: names that are not portcullis', any cookie-octets.
fn foreign_cookie() -> impl Strategy<Value = (String, String)> {
    (
        "[A-Za-z0-9!#$%&'*+.^`|~-]{1,12}",
        "[\\x21\\x23-\\x2b\\x2d-\\x3a\\x3c-\\x5b\\x5d-\\x7e]{0,12}",
    )
        .prop_filter("not a portcullis name", |(name, _)| {
            !name.starts_with("_portcullis")
        })
}

/// How a browser may send pairs: in any order, over one to three `Cookie`
/// headers (HTTP/2 splits them, RFC 9113 §8.2.3), with `;` and optional spaces.
#[derive(Debug, Clone)]
struct Sending {
    order: Vec<Index>,
    headers: usize,
    separators: Vec<Index>,
}

fn sending() -> impl Strategy<Value = Sending> {
    (
        proptest::collection::vec(any::<Index>(), 0..16),
        1usize..=3,
        proptest::collection::vec(any::<Index>(), 1..8),
    )
        .prop_map(|(order, headers, separators)| Sending {
            order,
            headers,
            separators,
        })
}

impl Sending {
    fn send(&self, mut pairs: Vec<(String, String)>) -> HeaderMap {
        // A shuffle driven by the generated indices.
        for (i, index) in self.order.iter().enumerate() {
            if pairs.len() > 1 {
                let a = i % pairs.len();
                let b = index.index(pairs.len());
                pairs.swap(a, b);
            }
        }
        const SEPARATORS: [&str; 4] = ["; ", ";", " ; ", ";  "];
        let mut headers: Vec<String> = vec![String::new(); self.headers];
        for (i, (name, value)) in pairs.iter().enumerate() {
            let header = &mut headers[i % self.headers];
            if !header.is_empty() {
                let sep = self.separators[i % self.separators.len()].index(SEPARATORS.len());
                header.push_str(SEPARATORS[sep]);
            }
            header.push_str(name);
            header.push('=');
            header.push_str(value);
        }
        let mut map = HeaderMap::new();
        for header in headers.into_iter().filter(|h| !h.is_empty()) {
            map.append(
                COOKIE,
                HeaderValue::from_str(&header).expect("cookie-octets"),
            );
        }
        map
    }
}

/// The property: a stored session always loads as it was, whatever else the
/// browser sends and however it orders and splits the cookies.
fn a_sealed_session_always_opens(
    session: &Session,
    foreign: Vec<(String, String)>,
    sending: &Sending,
) -> Result<(), TestCaseError> {
    let s = store();
    let set = s
        .store_at(session, &HeaderMap::new(), NOW)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut pairs = kept_pairs(&set);
    prop_assert_eq!(pairs.len(), set.len());
    pairs.extend(foreign);
    let loaded = s.load(&sending.send(pairs), NOW);
    prop_assert_eq!(loaded.session.as_deref().map(|o| &o.session), Some(session));
    prop_assert!(loaded.clear.is_empty());
    Ok(())
}

/// One entry of a forged `Cookie` header, built from two sealed sessions.
#[derive(Debug, Clone)]
enum Forged {
    /// Chunk `i` of session `which`, as written.
    Chunk(bool, Index),
    /// Chunk `i`'s value under chunk `j`'s name.
    Moved(bool, Index, Index),
    /// Session `which` split again into `parts` chunks at other points.
    Resplit(bool, Vec<Index>),
    /// Chunk `i` with one byte changed to another base64url character.
    Flipped(bool, Index, Index, Index),
    /// Chunk `i` cut short (or with a character added).
    Truncated(bool, Index, Index),
    Extended(bool, Index),
    /// Chunk `i` sealed by another key or for another cookie name.
    Foreign(Index),
    /// A surplus chunk name with junk.
    Surplus(usize, String),
    /// Look-alike names: `_portcullis_01`, `_portcullis_`, `_PORTCULLIS`.
    LookAlike(Index, String),
}

fn forged() -> impl Strategy<Value = Forged> {
    let b64 = "[A-Za-z0-9_-]{0,24}";
    prop_oneof![
        4 => (any::<bool>(), any::<Index>()).prop_map(|(w, i)| Forged::Chunk(w, i)),
        2 => (any::<bool>(), any::<Index>(), any::<Index>())
            .prop_map(|(w, i, j)| Forged::Moved(w, i, j)),
        1 => (any::<bool>(), proptest::collection::vec(any::<Index>(), 0..4))
            .prop_map(|(w, p)| Forged::Resplit(w, p)),
        1 => (any::<bool>(), any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(w, i, at, to)| Forged::Flipped(w, i, at, to)),
        1 => (any::<bool>(), any::<Index>(), any::<Index>())
            .prop_map(|(w, i, at)| Forged::Truncated(w, i, at)),
        1 => (any::<bool>(), any::<Index>()).prop_map(|(w, i)| Forged::Extended(w, i)),
        1 => any::<Index>().prop_map(Forged::Foreign),
        1 => (0usize..14, b64).prop_map(|(i, v)| Forged::Surplus(i, v)),
        1 => (any::<Index>(), b64).prop_map(|(i, v)| Forged::LookAlike(i, v)),
    ]
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Chunks of a two-chunk session sealed under another secret, and under
/// another cookie name, renamed to portcullis' names: never to be opened.
static FOREIGN: std::sync::LazyLock<Vec<(String, String)>> = std::sync::LazyLock::new(|| {
    let mut session = Session {
        id: "foreign".into(),
        provider: "idp".into(),
        identity: Identity {
            sub: "mallory".into(),
            email: None,
            email_verified: None,
            name: None,
            preferred_username: None,
            groups: Vec::new(),
            extra: BTreeMap::new(),
            added: Default::default(),
        },
        tokens: Tokens::default(),
        created_at: NOW - 10,
        expires_at: NOW + 3600,
        last_seen_at: NOW - 10,
        sid: None,
        refreshed_at: 0,
    };
    session.tokens.access_token = Some("t".repeat(4000));
    let other_key = SessionCookies::new(&session_config(OTHER_SECRET, &[]));
    let mut foreign = kept_pairs(
        &other_key
            .store_at(&session, &HeaderMap::new(), NOW)
            .unwrap(),
    );
    let mut config = session_config(SECRET, &[]);
    config.cookie_name = "_other".into();
    let other_name = SessionCookies::new(&config);
    foreign.extend(
        kept_pairs(
            &other_name
                .store_at(&session, &HeaderMap::new(), NOW)
                .unwrap(),
        )
        .into_iter()
        .map(|(n, v)| (n.replacen("_other", "_portcullis", 1), v)),
    );
    foreign
});

/// Two sealed sessions and the pairs each was stored in.
struct Sealed {
    sessions: [Session; 2],
    sealed: [String; 2],
    pairs: [Vec<(String, String)>; 2],
    foreign: Vec<(String, String)>,
}

fn seal_two(s: &SessionCookies, a: &Session, b: &Session) -> Sealed {
    let pairs = [a, b].map(|x| kept_pairs(&s.store_at(x, &HeaderMap::new(), NOW).unwrap()));
    let sealed = pairs
        .clone()
        .map(|p| p.into_iter().map(|(_, v)| v).collect::<String>());
    let foreign = FOREIGN.clone();
    Sealed {
        sessions: [a.clone(), b.clone()],
        sealed,
        pairs,
        foreign,
    }
}

impl Sealed {
    fn pairs_for(&self, forged: &Forged, s: &SessionCookies) -> Vec<(String, String)> {
        let of = |w: bool| &self.pairs[usize::from(w)];
        let pick = |w: bool, i: &Index| of(w)[i.index(of(w).len())].clone();
        match forged {
            Forged::Chunk(w, i) => vec![pick(*w, i)],
            Forged::Moved(w, i, j) => {
                let (_, value) = pick(*w, i);
                vec![(s.chunk_name(j.index(MAX_CHUNKS + 2)), value)]
            }
            Forged::Resplit(w, points) => {
                let sealed = &self.sealed[usize::from(*w)];
                let mut cuts: Vec<usize> = points.iter().map(|p| p.index(sealed.len())).collect();
                cuts.push(0);
                cuts.push(sealed.len());
                cuts.sort_unstable();
                cuts.dedup();
                cuts.windows(2)
                    .enumerate()
                    .map(|(k, w)| (s.chunk_name(k), sealed[w[0]..w[1]].to_owned()))
                    .collect()
            }
            Forged::Flipped(w, i, at, to) => {
                let (name, value) = pick(*w, i);
                let mut bytes = value.into_bytes();
                let at = at.index(bytes.len());
                let to = B64[to.index(B64.len())];
                if bytes[at] == to {
                    bytes[at] = if to == b'A' { b'B' } else { b'A' };
                } else {
                    bytes[at] = to;
                }
                vec![(name, String::from_utf8(bytes).expect("ASCII"))]
            }
            Forged::Truncated(w, i, at) => {
                let (name, mut value) = pick(*w, i);
                value.truncate(at.index(value.len()));
                vec![(name, value)]
            }
            Forged::Extended(w, i) => {
                let (name, value) = pick(*w, i);
                vec![(name, format!("{value}A"))]
            }
            Forged::Foreign(i) => vec![self.foreign[i.index(self.foreign.len())].clone()],
            Forged::Surplus(i, value) => vec![(s.chunk_name(*i), value.clone())],
            Forged::LookAlike(i, value) => {
                const NAMES: [&str; 6] = [
                    "_portcullis_01",
                    "_portcullis_",
                    "_PORTCULLIS",
                    "_portcullis_1000",
                    "_portcullis_flow_0123456789abcdef",
                    "x_portcullis",
                ];
                vec![(NAMES[i.index(NAMES.len())].to_owned(), value.clone())]
            }
        }
    }
}

/// The property: whatever chunks arrive, a session opens only when the chunks
/// join, in index order, to a value portcullis sealed, and it is the session
/// sealed in it. Nothing panics, and what is cleared is only session cookies
/// the request carried, at most `MAX_DELETIONS`.
fn chunks_never_open_what_was_not_sealed(
    a: &Session,
    b: &Session,
    forged: &[Forged],
    sending: &Sending,
) -> Result<(), TestCaseError> {
    let s = store();
    let sealed = seal_two(&s, a, b);
    let pairs: Vec<(String, String)> = forged
        .iter()
        .flat_map(|f| sealed.pairs_for(f, &s))
        .collect();
    let headers = sending.send(pairs.clone());
    let loaded = s.load(&headers, NOW);
    let mut chunks: Vec<(usize, &str)> = pairs
        .iter()
        .filter_map(|(name, value)| {
            let index = chunk_index(s.chunk_suffix(name.as_bytes())?)?;
            Some((index, value.as_str()))
        })
        .collect();
    chunks.sort_by_key(|(i, _)| *i);
    let joined: String = chunks.iter().map(|(_, v)| *v).collect();
    let indices: Vec<usize> = chunks.iter().map(|(i, _)| *i).collect();
    let well_formed = indices == (0..chunks.len()).collect::<Vec<_>>()
        && chunks.len()
            == pairs
                .iter()
                .filter(|(n, _)| s.chunk_suffix(n.as_bytes()).is_some())
                .count();
    match &loaded.session {
        Some(opened) => {
            let which = sealed.sealed.iter().position(|v| *v == joined);
            prop_assert!(
                well_formed && which.is_some(),
                "opened a session from chunks that are not a sealed value: {:?}",
                pairs
            );
            let which = which.expect("checked");
            prop_assert_eq!(&opened.session, &sealed.sessions[which]);
            prop_assert!(loaded.clear.is_empty());
        }
        None => {
            // The one set that must open did not: only a sealed value, joined
            // in order, with nothing else under a session name, opens.
            prop_assert!(
                !(well_formed && sealed.sealed.contains(&joined)),
                "a sealed value, sent whole, did not open: {:?}",
                pairs
            );
            prop_assert!(loaded.clear.len() <= MAX_DELETIONS);
            for deletion in &loaded.clear {
                let deletion = deletion.to_str().expect("ASCII");
                let name = deletion.split('=').next().unwrap_or("");
                prop_assert!(deletion.contains("Max-Age=0"));
                prop_assert!(s.chunk_suffix(name.as_bytes()).is_some(), "{}", deletion);
                prop_assert!(pairs.iter().any(|(n, _)| n == name), "{}", deletion);
            }
        }
    }
    Ok(())
}

/// One piece of a `Cookie` header as an attacker may write it.
#[derive(Debug, Clone)]
enum Piece {
    Pair(String, String),
    Nameless(String),
    Empty,
}

const OWN_NAMES: [&str; 6] = [
    "_portcullis",
    "_portcullis_1",
    "_portcullis_9",
    "_portcullis_10",
    "_portcullis_999",
    "_portcullis_flow_0123456789abcdef",
];

fn piece() -> impl Strategy<Value = Piece> {
    // Any byte a header value may hold but `;`, and no whitespace at the ends
    // (trimmed, so it cannot be told apart): names and values as attackers send.
    let inner = "[\\x21-\\x3a\\x3c-\\x7e\\x80-\\xff]([\\x20\\x09\\x21-\\x3a\\x3c-\\x7e\\x80-\\xff]{0,10}[\\x21-\\x3a\\x3c-\\x7e\\x80-\\xff])?";
    let name = prop_oneof![
        3 => proptest::sample::select(&OWN_NAMES[..]).prop_map(str::to_owned),
        3 => "[A-Za-z0-9_-]{1,12}",
        1 => inner.prop_filter("no = in a name", |n| !n.contains('=')),
    ];
    let value = prop_oneof![
        "[A-Za-z0-9_-]{0,12}",
        inner.prop_map(|v| v.to_owned()),
        "\"[a-z =]{0,6}\"",
    ];
    prop_oneof![
        6 => (name, value).prop_map(|(n, v)| Piece::Pair(n, v)),
        1 => "[A-Za-z0-9_-]{1,8}".prop_map(Piece::Nameless),
        1 => Just(Piece::Empty),
    ]
}

/// Serialises pieces, in order, into `Cookie` headers (contiguous runs over
/// `headers` headers), joined by `;`, with optional whitespace around each
/// piece and around `=`.
fn cookie_headers(pieces: &[Piece], spaces: &[Index], headers: usize) -> HeaderMap {
    const OWS: [&str; 4] = ["", " ", "  ", "\t"];
    let ws = |k: usize| OWS[spaces[k % spaces.len()].index(OWS.len())];
    let mut lines: Vec<Vec<Vec<u8>>> = vec![Vec::new(); headers];
    for (k, piece) in pieces.iter().enumerate() {
        let mut text = ws(k).as_bytes().to_vec();
        match piece {
            Piece::Pair(name, value) => {
                text.extend_from_slice(name.as_bytes());
                text.extend_from_slice(ws(k + 1).as_bytes());
                text.push(b'=');
                text.extend_from_slice(ws(k + 2).as_bytes());
                text.extend_from_slice(value.as_bytes());
            }
            Piece::Nameless(token) => text.extend_from_slice(token.as_bytes()),
            Piece::Empty => {}
        }
        text.extend_from_slice(ws(k + 3).as_bytes());
        lines[k * headers / pieces.len()].push(text);
    }
    let mut map = HeaderMap::new();
    for line in lines {
        map.append(
            COOKIE,
            HeaderValue::from_bytes(&line.join(&b';')).expect("a valid header value"),
        );
    }
    map
}

fn raw(piece: &Piece) -> Option<Vec<u8>> {
    match piece {
        Piece::Pair(name, value) => Some(format!("{name}={value}").into_bytes()),
        Piece::Nameless(token) => Some(token.clone().into_bytes()),
        Piece::Empty => None,
    }
}

/// The property of the scanner: it reads exactly the pairs the header holds,
/// in order; and stripping leaves one header, removes every portcullis cookie, and only those,
/// keeping every other piece byte for byte (but for whitespace around `=`,
/// which the serialisation here adds and the app's own parser trims).
fn the_scanner_reads_what_was_sent(
    pieces: &[Piece],
    spaces: &[Index],
    headers: usize,
) -> Result<(), TestCaseError> {
    let s = store();
    let mut map = cookie_headers(pieces, spaces, headers);
    let expected: Vec<(Vec<u8>, Vec<u8>)> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Pair(n, v) => Some((n.clone().into_bytes(), v.clone().into_bytes())),
            _ => None,
        })
        .collect();
    let got: Vec<(Vec<u8>, Vec<u8>)> = cookie_pairs(&map)
        .map(|p| (p.name.to_vec(), p.value.to_vec()))
        .collect();
    prop_assert_eq!(&got, &expected);

    let own = |name: &str| s.is_own_cookie(name);
    let any_own = pieces
        .iter()
        .any(|p| matches!(p, Piece::Pair(n, _) if own(n)));
    let before = map.clone();
    let several = before.get_all(COOKIE).iter().nth(1).is_some();
    s.strip_own_cookies(&mut map);
    // Several `Cookie` headers (HTTP/2 sends a field per cookie) are joined
    // into one for the HTTP/1.1 upstream even with nothing to strip.
    if !any_own && !several {
        prop_assert_eq!(&map, &before);
        return Ok(());
    }
    let values: Vec<&HeaderValue> = map.get_all(COOKIE).iter().collect();
    prop_assert!(values.len() <= 1);
    let kept: Vec<Vec<u8>> = cookie_pieces(&map).map(<[u8]>::to_vec).collect();
    let expected_kept: Vec<Vec<u8>> = pieces
        .iter()
        .filter(|p| !matches!(p, Piece::Pair(n, _) if own(n)))
        .filter_map(raw)
        .collect();
    let squeeze = |piece: &[u8]| -> Vec<u8> {
        match memchr::memchr(b'=', piece) {
            Some(eq) => [piece[..eq].trim_ascii(), b"=", piece[eq + 1..].trim_ascii()].concat(),
            None => piece.to_vec(),
        }
    };
    let kept_squeezed: Vec<Vec<u8>> = kept.iter().map(|p| squeeze(p)).collect();
    prop_assert_eq!(kept_squeezed, expected_kept);
    prop_assert!(
        cookie_pairs(&map).all(|p| !s.is_own_name(p.name)),
        "an own cookie reaches the upstream"
    );
    Ok(())
}

/// Arbitrary bytes in `Cookie` headers, seeded with real chunks: never a panic,
/// never a session but one that was sealed, a bounded clear.
fn arbitrary_headers_never_open_or_panic(
    a: &Session,
    noise: &[Vec<u8>],
    chunks: &[Index],
) -> Result<(), TestCaseError> {
    let s = store();
    let pairs = kept_pairs(&s.store_at(a, &HeaderMap::new(), NOW).unwrap());
    let mut map = HeaderMap::new();
    for (k, bytes) in noise.iter().enumerate() {
        let mut line = bytes.clone();
        if let Some(i) = chunks.get(k) {
            let (name, value) = &pairs[i.index(pairs.len())];
            line.extend_from_slice(format!(";{name}={value}").as_bytes());
        }
        if let Ok(value) = HeaderValue::from_bytes(&line) {
            map.append(COOKIE, value);
        }
    }
    let loaded = s.load(&map, NOW);
    if let Some(opened) = &loaded.session {
        prop_assert_eq!(&opened.session, a);
    }
    prop_assert!(loaded.clear.len() <= MAX_DELETIONS);
    let mut stripped = map.clone();
    s.strip_own_cookies(&mut stripped);
    prop_assert!(cookie_pairs(&stripped).all(|p| !s.is_own_name(p.name)));
    let _ = s.clear(&map);
    let _ = s.clear_flows(&map);
    Ok(())
}

/// Header bytes from the tokens cookie headers are made of, and any byte.
fn noise() -> impl Strategy<Value = Vec<Vec<u8>>> {
    const TOKENS: &[&[u8]] = &[
        b"_portcullis",
        b"_portcullis_",
        b"_flow_",
        b";_portcullis=",
        b"; _portcullis_1=",
        b";_portcullis_10=",
        b";_portcullis_12=",
        b"; _portcullis_01 = ",
        b"0123456789abcdef",
        b"_",
        b"=",
        b";",
        b" ",
        b"\t",
        b"\"",
        b"0",
        b"1",
        b"9",
        b"10",
        b"999",
        b"1000",
        b"AQ",
        b"AAAA",
        b"-_",
        b"\xff",
        b"\x80",
        b"%00",
        b",",
    ];
    let token = prop_oneof![
        6 => proptest::sample::select(TOKENS).prop_map(<[u8]>::to_vec),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ];
    proptest::collection::vec(
        proptest::collection::vec(token, 0..24).prop_map(|t| t.concat()),
        1..4,
    )
}

proptest! {
    #[test]
    fn sealed_sessions_always_open(
        session in session(),
        foreign in proptest::collection::vec(foreign_cookie(), 0..6),
        sending in sending(),
    ) {
        a_sealed_session_always_opens(&session, foreign, &sending)?;
    }

    #[test]
    fn forged_chunk_sets_never_open_an_unsealed_session(
        a in session(),
        b in session(),
        forged in proptest::collection::vec(forged(), 0..8),
        sending in sending(),
    ) {
        chunks_never_open_what_was_not_sealed(&a, &b, &forged, &sending)?;
    }

    #[test]
    fn the_cookie_scanner_reads_exactly_what_was_sent(
        pieces in proptest::collection::vec(piece(), 0..10),
        spaces in proptest::collection::vec(any::<Index>(), 1..8),
        headers in 1usize..=3,
    ) {
        the_scanner_reads_what_was_sent(&pieces, &spaces, headers)?;
    }

    #[test]
    fn arbitrary_cookie_headers_never_open_or_panic(
        a in session(),
        noise in noise(),
        chunks in proptest::collection::vec(any::<Index>(), 0..4),
    ) {
        arbitrary_headers_never_open_or_panic(&a, &noise, &chunks)?;
    }
}

#[test]
#[ignore = "fuzz target: FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored"]
fn fuzz_session_chunks() {
    crate::fuzz::fuzz(
        "session_chunks",
        (
            session(),
            session(),
            proptest::collection::vec(forged(), 0..8),
            sending(),
        ),
        |(a, b, forged, sending)| chunks_never_open_what_was_not_sealed(&a, &b, &forged, &sending),
    );
}

#[test]
#[ignore = "fuzz target: FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored"]
fn fuzz_sealed_session() {
    crate::fuzz::fuzz(
        "sealed_session",
        (
            session(),
            proptest::collection::vec(foreign_cookie(), 0..6),
            sending(),
        ),
        |(session, foreign, sending)| a_sealed_session_always_opens(&session, foreign, &sending),
    );
}

#[test]
#[ignore = "fuzz target: FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored"]
fn fuzz_cookie_scanner() {
    crate::fuzz::fuzz(
        "cookie_scanner",
        (
            proptest::collection::vec(piece(), 0..10),
            proptest::collection::vec(any::<Index>(), 1..8),
            1usize..=3,
        ),
        |(pieces, spaces, headers)| the_scanner_reads_what_was_sent(&pieces, &spaces, headers),
    );
}

#[test]
#[ignore = "fuzz target: FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored"]
fn fuzz_cookie_bytes() {
    crate::fuzz::fuzz(
        "cookie_bytes",
        (
            session(),
            noise(),
            proptest::collection::vec(any::<Index>(), 0..4),
        ),
        |(a, noise, chunks)| arbitrary_headers_never_open_or_panic(&a, &noise, &chunks),
    );
}
