//! Properties of the header functions that read what a client sends (issue #10
//! item 9): no spelling of an identity or forwarding header survives the
//! strip, and no header a client names in `Connection` (nor a fixed hop-by-hop
//! one) reaches the next hop; every other header passes untouched.

use std::net::IpAddr;

use http::header::{CONNECTION, HOST};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::*;

const IDENTITY: [&str; 7] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-name",
    "x-forwarded-groups",
    "x-forwarded-provider",
    "x-forwarded-access-token",
];

/// `name` with each letter in either case and each `-` as `-` or `_`.
fn spelling(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        proptest::sample::select(names),
        proptest::collection::vec(any::<bool>(), 40),
    )
        .prop_map(|(name, flips)| {
            name.bytes()
                .zip(flips.iter().cycle())
                .map(|(b, &flip)| match (b, flip) {
                    (b'-', true) => '_',
                    (b, true) => b.to_ascii_uppercase() as char,
                    (b, false) => b as char,
                })
                .collect()
        })
}

/// Header names a client may send: spellings of protected ones, near misses
/// and other names.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => spelling(&IDENTITY),
        2 => spelling(&[
            "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port",
            "x-forwarded-prefix", "x-forwarded-uri", "x-forwarded-method", "x-real-ip",
            "forwarded",
        ]),
        1 => spelling(&[
            "x-forwarded-userx", "x-forwarded", "x-forwarded-users", "xforwarded-user",
            "x-forwarded--user", "connection", "keep-alive", "te", "trailer", "upgrade",
            "transfer-encoding", "proxy-connection", "accept", "cookie", "host",
        ]),
        2 => "[a-z0-9_-]{1,12}",
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((header_name(), "[ -~]{0,12}"), 0..12)
}

fn build(lines: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in lines {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// A name as a CGI gateway or framework that merges `_` and `-` reads it.
fn merged(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// The property: after the strip no header reads, case-insensitively and with
/// `_` as `-`, as a protected one; everything else is kept, value for value.
fn spoofed_headers_never_pass(lines: &[(String, String)]) -> Result<(), TestCaseError> {
    let guard = SpoofGuard::new(IDENTITY);
    let before = build(lines);
    let mut after = before.clone();
    guard.strip(&mut after);
    for name in after.keys() {
        prop_assert!(
            !IDENTITY.contains(&merged(name.as_str()).as_str()),
            "{} passed",
            name
        );
    }
    for name in before.keys() {
        if !IDENTITY.contains(&merged(name.as_str()).as_str()) {
            let kept: Vec<_> = after.get_all(name).iter().collect();
            let sent: Vec<_> = before.get_all(name).iter().collect();
            prop_assert_eq!(kept, sent);
        }
    }
    Ok(())
}

/// From a peer that is not trusted, the forwarding headers the upstream gets
/// are exactly portcullis' own, in every spelling.
fn untrusted_forwarding_claims_never_pass(
    lines: &[(String, String)],
    peer: IpAddr,
) -> Result<(), TestCaseError> {
    let mut map = build(lines);
    map.insert(HOST, HeaderValue::from_static("app.example.com"));
    set_forwarded(&mut map, &PeerIp::new(peer), &[], "https");
    let peer_ip = PeerIp::new(peer);
    for name in map.keys() {
        let merged = merged(name.as_str());
        match merged.as_str() {
            "x-forwarded-for" => {
                let values: Vec<_> = map.get_all(name).iter().collect();
                prop_assert_eq!(values, vec![&peer_ip.header]);
            }
            "x-forwarded-proto" => prop_assert_eq!(map.get(name).unwrap(), "https"),
            "x-forwarded-host" => prop_assert_eq!(map.get(name).unwrap(), "app.example.com"),
            "x-forwarded-port" | "x-forwarded-prefix" | "x-forwarded-uri"
            | "x-forwarded-method" | "x-real-ip" | "forwarded" => {
                prop_assert!(false, "{} passed from an untrusted peer", name);
            }
            _ => {}
        }
        if ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"].contains(&merged.as_str()) {
            prop_assert_eq!(
                name.as_str(),
                merged.as_str(),
                "a look-alike spelling passed"
            );
        }
    }
    Ok(())
}

/// `Connection` values naming any headers, with odd spacing, case and empty items.
fn connection_values() -> impl Strategy<Value = Vec<String>> {
    let item = prop_oneof![header_name(), Just(String::new()), Just("close".to_owned()),];
    let value = (proptest::collection::vec(
        (item, "[ \t]{0,2}", "[ \t]{0,2}"),
        0..5,
    ),)
        .prop_map(|(items,)| {
            items
                .into_iter()
                .map(|(item, l, r)| format!("{l}{item}{r}"))
                .collect::<Vec<_>>()
                .join(",")
        });
    proptest::collection::vec(value, 0..3)
}

/// The property: no header named in `Connection`, nor a fixed hop-by-hop
/// header, reaches the next hop; every other header passes untouched.
fn hop_by_hop_headers_never_pass(
    lines: &[(String, String)],
    connection: &[String],
) -> Result<(), TestCaseError> {
    let mut before = build(lines);
    before.remove(CONNECTION);
    for value in connection {
        if let Ok(value) = HeaderValue::from_str(value) {
            before.append(CONNECTION, value);
        }
    }
    let named: Vec<String> = before
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(|t| t.trim_matches([' ', '\t']).to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let hop = |name: &str| {
        named.iter().any(|n| n == name)
            || [
                "connection",
                "keep-alive",
                "proxy-connection",
                "te",
                "trailer",
                "transfer-encoding",
                "upgrade",
            ]
            .contains(&name)
    };
    let mut after = before.clone();
    strip_hop_by_hop(&mut after);
    for name in after.keys() {
        prop_assert!(!hop(name.as_str()), "{} passed", name);
    }
    for name in before.keys() {
        if !hop(name.as_str()) {
            let kept: Vec<_> = after.get_all(name).iter().collect();
            let sent: Vec<_> = before.get_all(name).iter().collect();
            prop_assert_eq!(kept, sent);
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn spoofed_identity_headers_never_pass(lines in headers()) {
        spoofed_headers_never_pass(&lines)?;
    }

    #[test]
    fn untrusted_forwarding_claims_never_reach_the_upstream(
        lines in headers(),
        peer in any::<IpAddr>(),
    ) {
        untrusted_forwarding_claims_never_pass(&lines, peer)?;
    }

    #[test]
    fn headers_named_in_connection_never_pass(
        lines in headers(),
        connection in connection_values(),
    ) {
        hop_by_hop_headers_never_pass(&lines, &connection)?;
    }
}

#[test]
#[ignore = "fuzz target: FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored"]
fn fuzz_request_headers() {
    crate::fuzz::fuzz(
        "request_headers",
        (headers(), connection_values(), any::<IpAddr>()),
        |(lines, connection, peer)| {
            spoofed_headers_never_pass(&lines)?;
            untrusted_forwarding_claims_never_pass(&lines, peer)?;
            hop_by_hop_headers_never_pass(&lines, &connection)
        },
    );
}
