use std::net::IpAddr;

use http::{HeaderMap, Request, Version};
use ipnet::IpNet;

use super::*;

/// Header lines as `(name, value)`, in order.
type Lines<'a> = &'a [(&'a str, &'a str)];

fn map(pairs: Lines) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

fn names(headers: &HeaderMap) -> Vec<&str> {
    let mut names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    names
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|n| n.parse().unwrap()).collect()
}

#[test]
fn hop_by_hop_headers_and_connection_listed_names_are_removed() {
    let cases: &[(Lines, &[&str])] = &[
        (&[("connection", "close"), ("accept", "*/*")], &["accept"]),
        (
            &[
                ("connection", "X-Foo, x-bar"),
                ("x-foo", "1"),
                ("x-bar", "2"),
                ("x-baz", "3"),
            ],
            &["x-baz"],
        ),
        (
            &[
                ("connection", "x-foo"),
                ("connection", " X-BAR "),
                ("x-foo", "1"),
                ("x-bar", "2"),
            ],
            &[],
        ),
        (
            &[
                ("connection", "keep-alive,,x-foo ,"),
                ("x-foo", "1"),
                ("keep-alive", "timeout=5"),
            ],
            &[],
        ),
        (
            &[
                ("connection", "not a valid name, x-foo"),
                ("x-foo", "1"),
                ("host", "a"),
            ],
            &["host"],
        ),
        (
            &[
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
                ("te", "trailers"),
                ("trailer", "x-checksum"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "websocket"),
                ("content-type", "text/plain"),
            ],
            &["content-type"],
        ),
    ];
    for (input, kept) in cases {
        let mut headers = map(input);
        strip_hop_by_hop(&mut headers);
        assert_eq!(names(&headers), *kept, "input {input:?}");
    }
}

#[test]
fn keep_upgrade_variant_keeps_only_the_upgrade_pair() {
    let mut headers = map(&[
        ("connection", "Upgrade, x-foo, keep-alive"),
        ("upgrade", "websocket"),
        ("x-foo", "1"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ]);
    strip_hop_by_hop_keep_upgrade(&mut headers);
    assert_eq!(
        names(&headers),
        ["connection", "sec-websocket-key", "upgrade"]
    );
    assert_eq!(headers["connection"], "upgrade");
    assert_eq!(headers["upgrade"], "websocket");
}

#[test]
fn keep_upgrade_variant_without_upgrade_header_adds_no_connection() {
    let mut headers = map(&[("connection", "upgrade"), ("accept", "*/*")]);
    strip_hop_by_hop_keep_upgrade(&mut headers);
    assert_eq!(names(&headers), ["accept"]);
}

#[test]
fn upgrade_requests_are_http11_with_connection_upgrade_and_not_h2c() {
    let cases: &[(Version, Lines, bool)] = &[
        (
            Version::HTTP_11,
            &[("connection", "Upgrade"), ("upgrade", "websocket")],
            true,
        ),
        (
            Version::HTTP_11,
            &[
                ("connection", "keep-alive, upgrade"),
                ("upgrade", "WebSocket"),
            ],
            true,
        ),
        (
            Version::HTTP_11,
            &[
                ("connection", "keep-alive"),
                ("connection", "UPGRADE"),
                ("upgrade", "chat"),
            ],
            true,
        ),
        (
            Version::HTTP_11,
            &[("connection", "upgrade"), ("upgrade", "websocket/13")],
            true,
        ),
        (Version::HTTP_11, &[("upgrade", "websocket")], false),
        (Version::HTTP_11, &[("connection", "upgrade")], false),
        (
            Version::HTTP_11,
            &[("connection", "upgraded"), ("upgrade", "websocket")],
            false,
        ),
        (
            Version::HTTP_11,
            &[("connection", "upgrade"), ("upgrade", "h2c")],
            false,
        ),
        (
            Version::HTTP_11,
            &[("connection", "upgrade"), ("upgrade", "websocket, H2C")],
            false,
        ),
        (
            Version::HTTP_10,
            &[("connection", "upgrade"), ("upgrade", "websocket")],
            false,
        ),
        (
            Version::HTTP_2,
            &[("connection", "upgrade"), ("upgrade", "websocket")],
            false,
        ),
    ];
    for (version, pairs, expected) in cases {
        let mut req = Request::new(());
        *req.version_mut() = *version;
        *req.headers_mut() = map(pairs);
        assert_eq!(is_upgrade_request(&req), *expected, "{version:?} {pairs:?}");
    }
}

#[test]
fn spoofed_identity_headers_are_stripped_in_every_spelling() {
    let guard = SpoofGuard::new([
        "X-Forwarded-User",
        "X-Forwarded-Email",
        "x_forwarded_access_token",
    ]);
    let mut headers = map(&[
        ("x-forwarded-user", "admin"),
        ("X_Forwarded_User", "admin"),
        ("X-FORWARDED_USER", "admin"),
        ("x_forwarded-email", "a@b"),
        ("x-forwarded-access-token", "t"),
        ("x-forwarded-users", "kept"),
        ("x-forwarded-use", "kept"),
        ("x-forwarded-for", "kept"),
        ("cookie", "kept"),
    ]);
    headers.append("x-forwarded-user", HeaderValue::from_static("second value"));
    guard.strip(&mut headers);
    assert_eq!(
        names(&headers),
        [
            "cookie",
            "x-forwarded-for",
            "x-forwarded-use",
            "x-forwarded-users"
        ]
    );
}

#[test]
fn spoof_guard_protects_by_normalised_name() {
    let guard = SpoofGuard::new(["X-Auth-Request-Email"]);
    assert!(guard.protects("x_auth_request_email"));
    assert!(guard.protects("X-AUTH-REQUEST-EMAIL"));
    assert!(!guard.protects("x-auth-request-emails"));
    assert!(!SpoofGuard::default().protects("x-forwarded-user"));
    assert!(!guard.protects(""));
    // Names of 63 bytes and more share a length bit, and a leading `_` reads as `-`.
    let long = format!("x-{}", "a".repeat(70));
    let guard = SpoofGuard::new([long.as_str(), "-odd"]);
    assert!(guard.protects(&long.to_uppercase()));
    assert!(!guard.protects(&format!("x-{}", "a".repeat(69))));
    assert!(!guard.protects(&format!("x-{}b", "a".repeat(69))));
    assert!(guard.protects("_odd"));
    assert!(!guard.protects("_ods"));
}

#[test]
fn forwarded_headers_from_an_untrusted_peer_are_replaced() {
    let mut headers = map(&[
        ("host", "app.example.com"),
        ("x-forwarded-for", "10.9.9.9"),
        ("X_Forwarded_For", "10.8.8.8"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-uri", "/admin"),
        ("x-real-ip", "10.7.7.7"),
        ("forwarded", "for=10.6.6.6"),
    ]);
    set_forwarded(
        &mut headers,
        &PeerIp::new(ip("203.0.113.7")),
        &nets(&["10.0.0.0/8"]),
        "http",
    );
    assert_eq!(
        names(&headers),
        [
            "host",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto"
        ]
    );
    assert_eq!(headers["x-forwarded-for"], "203.0.113.7");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "app.example.com");
}

#[test]
fn forwarded_headers_from_a_trusted_proxy_are_appended_and_kept() {
    let mut headers = map(&[
        ("host", "internal:4180"),
        ("x-forwarded-for", "198.51.100.1, 10.0.0.5"),
        ("x-forwarded-for", "10.0.0.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example.com"),
    ]);
    set_forwarded(
        &mut headers,
        &PeerIp::new(ip("10.0.0.7")),
        &nets(&["10.0.0.0/8"]),
        "http",
    );
    assert_eq!(
        headers["x-forwarded-for"],
        "198.51.100.1, 10.0.0.5, 10.0.0.6, 10.0.0.7"
    );
    assert_eq!(headers.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-forwarded-host"], "app.example.com");
}

#[test]
fn trusted_proxy_without_forwarded_headers_gets_them_filled_in() {
    let mut headers = map(&[("host", "app.example.com")]);
    set_forwarded(
        &mut headers,
        &PeerIp::new(ip("::ffff:127.0.0.1")),
        &nets(&["127.0.0.1/32"]),
        "https",
    );
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-forwarded-host"], "app.example.com");
}

#[test]
fn no_trusted_proxies_means_nobody_is_believed() {
    let mut headers = map(&[("x-forwarded-for", "1.2.3.4")]);
    set_forwarded(&mut headers, &PeerIp::new(ip("127.0.0.1")), &[], "http");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert!(!headers.contains_key("x-forwarded-host"));
}

#[test]
fn the_client_ip_is_the_nearest_untrusted_hop() {
    let trusted = nets(&["10.0.0.0/8"]);
    let xff = |chain: &str| map(&[("x-forwarded-for", chain)]);
    // Through trusted proxies: the last address they did not write.
    assert_eq!(
        client_ip(
            &xff("1.1.1.1, 203.0.113.7, 10.0.0.2"),
            ip("10.0.0.1"),
            &trusted
        ),
        ip("203.0.113.7")
    );
    // From anyone else, the chain proves nothing.
    assert_eq!(
        client_ip(&xff("203.0.113.7"), ip("198.51.100.1"), &trusted),
        ip("198.51.100.1")
    );
    assert_eq!(
        client_ip(&xff("203.0.113.7"), ip("10.0.0.1"), &[]),
        ip("10.0.0.1")
    );
    // An unreadable hop stops the walk at the last trusted address.
    assert_eq!(
        client_ip(&xff("203.0.113.7, garbage"), ip("10.0.0.1"), &trusted),
        ip("10.0.0.1")
    );
    assert_eq!(
        client_ip(&HeaderMap::new(), ip("10.0.0.1"), &trusted),
        ip("10.0.0.1")
    );
}
