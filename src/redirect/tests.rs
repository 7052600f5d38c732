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
