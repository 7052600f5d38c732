use super::*;

const HOSTILE: &str = include_str!("../../tests/fixtures/open_redirects.txt");

#[test]
fn every_hostile_form_becomes_root() {
    let forms: Vec<&str> = HOSTILE.lines().filter(|l| !l.is_empty()).collect();
    assert!(forms.len() >= 100, "only {} forms", forms.len());
    for form in forms {
        assert_eq!(safe_rd(Some(form)), "/", "{form:?}");
        assert!(!is_safe_rd(form), "{form:?}");
    }
}

#[test]
fn hostile_forms_that_do_not_fit_on_a_line() {
    for form in [
        "/\n/evil.com",
        "/\r/evil.com",
        "/\r\n/evil.com",
        "\n//evil.com",
        "/evil.com\n",
        "/\u{0}/evil.com",
        "/\u{b}/evil.com",
        "/\u{c}/evil.com",
        "/\u{85}/evil.com",
        "/\u{a0}/evil.com",
        "/\u{3000}/evil.com",
        "/\u{2028}/evil.com",
        "/foo\r\nSet-Cookie: x=1",
    ] {
        assert_eq!(safe_rd(Some(form)), "/", "{form:?}");
    }
}

#[test]
fn missing_or_empty_rd_is_root() {
    assert_eq!(safe_rd(None), "/");
    assert_eq!(safe_rd(Some("")), "/");
}

#[test]
fn same_site_paths_pass_unchanged() {
    for good in [
        "/",
        "/app",
        "/app/",
        "/app?x=1",
        "/app?x=1&y=2",
        "/a/b#frag",
        "/a/b?x=1#frag",
        "/path%20with%20space",
        "/a%2Fb",
        "/search?q=a%2Bb",
        "/caf%C3%A9",
        "/café",
        "/a/./b",
        "/a/../b",
        "/..",
        "/a//b",
        "/?rd=//evil.com",
        "/?next=https://evil.com",
        "/#//evil.com",
        "/@evil.com",
        "/evil.com",
        "/:80",
        "/%25",
        "/100%25",
    ] {
        assert_eq!(safe_rd(Some(good)), good, "{good:?}");
    }
}

#[test]
fn overly_long_targets_become_root() {
    let long = format!("/{}", "a".repeat(MAX_RD_LEN));
    assert_eq!(safe_rd(Some(&long)), "/");
    let fits = format!("/{}", "a".repeat(MAX_RD_LEN - 1));
    assert_eq!(safe_rd(Some(&fits)), fits);
}

#[test]
fn decoding_is_checked_for_three_rounds() {
    assert!(!is_safe_rd("/%25252F/evil.com"));
    assert!(!is_safe_rd("/%2525252F/evil.com"));
    assert!(!is_safe_rd("/%2525252Fharmless"));
    assert!(is_safe_rd("/%252520three-rounds"));
}

/// Browsers read `\` as `/`, the URL parser too (so these stay on the site by
/// its reading), but not every upstream or intermediary: refused anywhere.
#[test]
fn a_backslash_anywhere_is_refused() {
    for form in ["/a\\b", "/a/b\\", "/a%5Cb", "/a%255Cb"] {
        assert!(!is_safe_rd(form), "{form:?}");
    }
}

/// The operator's app hosts: `wiki.example.com` on https's default port.
fn own(url: &Url) -> bool {
    url.scheme() == "https"
        && url.host_str() == Some("wiki.example.com")
        && url.port_or_known_default() == Some(443)
}

#[test]
fn an_absolute_rd_is_kept_only_on_an_own_host_and_as_parsed() {
    let kept = [
        (
            "https://wiki.example.com/page?x=1",
            "https://wiki.example.com/page?x=1",
        ),
        (
            "https://WIKI.example.com:443/a",
            "https://wiki.example.com/a",
        ),
        ("HTTPS://wiki.example.com", "https://wiki.example.com/"),
        (
            "https://wiki.example.com/a#frag",
            "https://wiki.example.com/a#frag",
        ),
    ];
    for (rd, expected) in kept {
        assert_eq!(safe_rd_or_own_url(Some(rd), own), expected, "{rd}");
    }
    let refused = [
        "https://evil.example/",
        "https://wiki.example.com.evil.example/",
        "https://wiki.example.com@evil.example/",
        "https://evil.example#@wiki.example.com/",
        "https://evil.example\\@wiki.example.com/",
        "https://evil.example/\\wiki.example.com",
        "https://wiki.example.com:444/",
        "http://wiki.example.com/",
        "https://user:pw@wiki.example.com/",
        "https://wiki.example.com//evil.example/",
        "https://wiki.example.com/%2f%2fevil.example",
        "https://wiki.example.com/\t/x",
        " https://wiki.example.com/",
        "https:wiki.example.com/",
        "https:/wiki.example.com/",
        "//wiki.example.com/",
        "javascript://wiki.example.com/%0aalert(1)",
        "https://93.184.216.34/",
    ];
    for rd in refused {
        let got = safe_rd_or_own_url(Some(rd), own);
        assert!(
            got == "/" || (got.starts_with('/') && !got.starts_with("//")),
            "{rd} -> {got}"
        );
        assert!(!got.contains("evil"), "{rd} -> {got}");
    }
    // Paths go on as before.
    assert_eq!(safe_rd_or_own_url(Some("/a?b=1"), own), "/a?b=1");
    assert_eq!(safe_rd_or_own_url(Some("//evil.example"), own), "/");
    assert_eq!(safe_rd_or_own_url(None, own), "/");
    // Without own hosts nothing absolute passes.
    assert_eq!(
        safe_rd_or_own_url(Some("https://wiki.example.com/"), |_| false),
        "/"
    );
}

#[test]
fn every_hostile_form_becomes_root_with_own_hosts_too() {
    for form in HOSTILE.lines().filter(|l| !l.is_empty()) {
        assert_eq!(safe_rd_or_own_url(Some(form), own), "/", "{form:?}");
    }
}

/// `[access] allowed_redirect_domains` as a host check: `rd` goes through
/// `safe_rd_or_own_url` with these entries as the only own hosts.
fn allowed(entries: &[&str]) -> impl Fn(&Url) -> bool {
    let entries: Vec<AllowedHost> = entries
        .iter()
        .map(|e| AllowedHost::parse(e).unwrap())
        .collect();
    move |url: &Url| entries.iter().any(|e| e.admits(url))
}

#[test]
fn allowed_redirect_domains_admit_their_hosts_and_ports() {
    let own = allowed(&[".example.com", "app.test:8443", "dev.test:*"]);
    for (rd, expected) in [
        ("https://example.com/", "https://example.com/"),
        ("https://a.example.com/x?y=1", "https://a.example.com/x?y=1"),
        ("https://a.b.example.com/", "https://a.b.example.com/"),
        ("http://A.Example.COM/", "http://a.example.com/"),
        ("https://a.example.com:443/", "https://a.example.com/"),
        ("https://app.test:8443/p", "https://app.test:8443/p"),
        // The port as a browser reads it, written back plainly.
        ("https://app.test:08443/p", "https://app.test:8443/p"),
        ("https://dev.test:1/", "https://dev.test:1/"),
        ("https://dev.test/", "https://dev.test/"),
    ] {
        assert_eq!(safe_rd_or_own_url(Some(rd), &own), expected, "{rd}");
    }
}

/// Every trick of issue #13 item 8 (and DESIGN §8.2): none passes.
#[test]
fn allowed_redirect_domains_refuse_every_trick() {
    let own = allowed(&[".example.com", "app.test:8443"]);
    for rd in [
        // Label boundary.
        "https://evil-example.com/",
        "https://evilexample.com/",
        "https://example.com.evil/",
        "https://example.com.evil.com/",
        "https://a.example.com.evil/",
        "https://example.comevil/",
        "https://xexample.com/",
        // User info, with and without a password, and look-alikes of it.
        "https://example.com@evil.com/",
        "https://a.example.com@evil.com/",
        "https://example.com:443@evil.com/",
        "https://user:pw@a.example.com/",
        "https://a.example.com%40evil.com/",
        "https://evil.com#@a.example.com/",
        "https://evil.com?@a.example.com/",
        "https://evil.com\\@a.example.com/",
        "https://evil.com/\\a.example.com",
        "https://a.example.com\\@evil.com/",
        // Ports other than allowed.
        "https://a.example.com:8443/",
        "https://app.test/",
        "https://app.test:443/",
        "https://app.test:8444/",
        // Empty labels and trailing dots.
        "https://.example.com/",
        "https://a..example.com/",
        "https://a.example.com..a.example.com/",
        "https://a.example.com./",
        // IDN and punycode look-alikes (Cyrillic а), and their fullwidth dots.
        "https://exаmple.com/",
        "https://a.exаmple.com/",
        "https://xn--exmple-4nf.com/",
        "https://a.example。com.evil/",
        // Scheme-relative, scheme tricks, other schemes.
        "//a.example.com/",
        "///a.example.com/",
        "/\\a.example.com/",
        "https:a.example.com/",
        "https:/a.example.com/",
        "https:\\\\a.example.com/",
        "javascript://a.example.com/%0aalert(1)",
        "JaVaScRiPt:alert(1)//a.example.com",
        "data:text/html,a.example.com",
        "ftp://a.example.com/",
        "ws://a.example.com/",
        // Whitespace and control characters.
        " https://a.example.com/",
        "https://a.example.com /",
        "https://a.example.com/\t/evil.com",
        "https://a.exam\tple.com/",
        "https://a.example.com\n.evil.com/",
        "https://a.example.com/\r\nSet-Cookie: x=1",
        "https://a.example.com\u{0}.evil.com/",
        // Encoded forms.
        "https%3A%2F%2Fa.example.com/",
        "https://a.example.com%2F@evil.com/",
        "https://a.example.com%2eevil.com/",
        "https://evil.com%23.example.com/",
        "https://a.example.com/%2f%2fevil.com",
        "https://a.example.com//evil.com",
        "https://a.example.com/%5cevil.com",
        // IP addresses.
        "https://93.184.216.34/",
        "https://[::1]/",
        "https://0x7f.1/",
    ] {
        let got = safe_rd_or_own_url(Some(rd), &own);
        assert!(
            got == "/" || (got.starts_with('/') && !got.starts_with("//")),
            "{rd:?} -> {got}"
        );
        assert!(!got.contains("evil"), "{rd:?} -> {got}");
    }
}

#[test]
fn allowed_redirect_domains_are_checked_when_read() {
    for good in [
        "app.example.com",
        ".example.com",
        "APP.Example.com",
        "app.example.com:8443",
        ".example.com:*",
        "xn--bcher-kva.example",
        "localhost",
    ] {
        assert!(AllowedHost::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        ".",
        "*.example.com",
        "*",
        "https://app.example.com",
        "app.example.com/",
        "user@app.example.com",
        "app.example.com.",
        "app..example.com",
        "-app.example.com",
        "app.example.com:0",
        "app.example.com:65536",
        "app.example.com:080",
        "app.example.com:+80",
        "app.example.com:",
        "bücher.example",
        "127.0.0.1",
        "[::1]",
        "app example.com",
        "app.example.com\\",
    ] {
        assert!(AllowedHost::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        AllowedHost::parse(".Example.com:*").unwrap().to_string(),
        ".example.com:*"
    );
}

#[test]
fn every_hostile_form_becomes_root_with_allowed_domains_too() {
    let own = allowed(&[".example.com:*", "localhost:*"]);
    for form in HOSTILE.lines().filter(|l| !l.is_empty()) {
        assert_eq!(safe_rd_or_own_url(Some(form), &own), "/", "{form:?}");
    }
}
