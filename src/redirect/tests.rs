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
