//! Properties of `rd` validation (issue #10 item 9): no accepted `rd` leads a
//! browser off-site, however a WHATWG URL parser (the `url` crate) reads it,
//! whether as sent, as the `Location` portcullis writes, as a link on the
//! sign-in page, or after an intermediary percent-decodes it again; nor to a
//! path starting with `//`, which an app redirecting on it would send off-site.

use http::header::LOCATION;
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use url::Url;

use super::*;
use crate::pages::{SignInButton, sign_in};

/// `public_url`s of several shapes: the origin every target must keep.
const PUBLIC_URLS: [&str; 4] = [
    "http://127.0.0.1:4180",
    "https://app.example.com",
    "https://app.example.com:8443",
    "http://[::1]:4180",
];

/// The pieces open-redirect payloads are made of: slashes, backslashes,
/// whitespace, their `%`-escapes (once and twice), `@`, `:`, schemes in any
/// case, dot segments, hosts, and characters browsers or normalisers fold.
const ATOMS: &[&str] = &[
    "/",
    "/",
    "/",
    "\\",
    "\t",
    "\n",
    "\r",
    " ",
    "\u{0}",
    "\u{b}",
    "\u{c}",
    "\u{7f}",
    "\u{85}",
    "\u{a0}",
    "\u{3000}",
    "\u{2028}",
    "\u{FF0F}",
    "\u{FF3C}",
    "\u{2215}",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "%09",
    "%0a",
    "%0D",
    "%20",
    "%00",
    "%7f",
    "%e3%80%80",
    "%ef%bc%8f",
    "%252f",
    "%255c",
    "%2509",
    "%25252f",
    "%25",
    "%2",
    "%",
    "%2e",
    "%2E%2e",
    ".",
    "..",
    "./",
    "../",
    "@",
    ":",
    "?",
    "#",
    "&",
    "=",
    ";",
    "evil.example",
    "a",
    "127.0.0.1",
    "[::1]",
    "0x7f.1",
    "http:",
    "https:",
    "HtTpS:",
    "javascript:",
    "JaVa%09ScRiPt:",
    "data:",
    "file:",
    "ftp:",
    "mailto:",
    "ws:",
    "blob:",
    "%68%74%74%70%3a",
    "user:pass@",
];

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(ATOMS).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
        1 => "[a-z0-9._~-]{1,8}",
    ]
}

/// `rd` values from the open-redirect grammar. Most start with `/`, as every
/// accepted one must, so that accepted values are common enough to test.
pub(super) fn rd_grammar() -> impl Strategy<Value = String> {
    let start = prop_oneof![
        6 => Just("/"),
        1 => Just(""),
        1 => Just("\\"),
        1 => Just("//"),
        1 => Just("/%2f"),
        1 => Just(" /"),
    ];
    (start, proptest::collection::vec(atom(), 0..10))
        .prop_map(|(start, atoms)| format!("{start}{}", atoms.concat()))
}

/// Where `target` (a path reference as a browser gets it) lands from `base`.
fn lands(base: &Url, target: &str) -> Result<Url, TestCaseError> {
    base.join(target)
        .map_err(|e| TestCaseError::fail(format!("{target:?} does not resolve: {e}")))
}

fn assert_same_origin(base: &Url, target: &str, what: &str) -> Result<(), TestCaseError> {
    let landed = lands(base, target)?;
    prop_assert_eq!(
        landed.origin(),
        base.origin(),
        "{} {:?} leaves {} for {}",
        what,
        target,
        base,
        landed
    );
    prop_assert!(
        landed.username().is_empty() && landed.password().is_none(),
        "{} {:?} carries credentials: {}",
        what,
        target,
        landed
    );
    // A path starting with `//` is a network-path reference to whatever app
    // echoes it in a redirect of its own (a trailing-slash redirect, say).
    prop_assert!(
        !landed.path().starts_with("//"),
        "{} {:?} lands on a path starting with //: {}",
        what,
        target,
        landed
    );
    Ok(())
}

/// The property: an accepted `rd` is used unchanged and stays on `public_url`'s
/// origin as sent, as written into `Location`, and after each of the rounds of
/// percent-decoding an intermediary may add; a refused one becomes `/`.
pub(super) fn accepted_rd_stays_on_site(rd: &str) -> Result<(), TestCaseError> {
    let kept = safe_rd(Some(rd));
    if !is_safe_rd(rd) {
        prop_assert_eq!(kept, "/");
        return Ok(());
    }
    prop_assert_eq!(&kept, rd);
    let response = crate::respond::redirect(&kept);
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| TestCaseError::fail(format!("no usable Location for {rd:?}")))?;
    let mut decoded = vec![rd.to_owned()];
    for _ in 0..DECODE_ROUNDS {
        let last = decoded.last().expect("starts with rd");
        decoded.push(percent_decode_str(last).decode_utf8_lossy().into_owned());
    }
    for public_url in PUBLIC_URLS {
        let base = Url::parse(public_url).expect("a valid public_url");
        assert_same_origin(&base, location, "Location")?;
        for (round, form) in decoded.iter().enumerate() {
            assert_same_origin(&base, form, &format!("rd decoded {round} times"))?;
        }
    }
    Ok(())
}

/// `href`, `src` and `action` attribute values of `html`, unescaped.
fn link_targets(html: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for attribute in ["href=\"", "src=\"", "action=\"", "formaction=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            targets.push(
                rest[..end]
                    .replace("&quot;", "\"")
                    .replace("&#x27;", "'")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&"),
            );
        }
    }
    targets
}

/// The sign-in page for any `rd`: every link stays on site, and the start
/// link carries exactly the `rd` that validation kept.
fn sign_in_page_links_stay_on_site(rd: &str) -> Result<(), TestCaseError> {
    let kept = safe_rd(Some(rd));
    let buttons = [SignInButton {
        id: "corp",
        display_name: "Corp",
        icon: None,
    }];
    let page = sign_in(&buttons, &kept, None);
    let targets = link_targets(&page);
    prop_assert!(!targets.is_empty());
    let base = Url::parse(PUBLIC_URLS[1]).expect("a valid public_url");
    let mut starts = 0;
    for target in &targets {
        assert_same_origin(&base, target, "sign-in page link")?;
        let landed = lands(&base, target)?;
        if landed.path() == "/oauth2/start/corp" {
            starts += 1;
            let carried: Vec<String> = landed
                .query_pairs()
                .filter(|(k, _)| k == "rd")
                .map(|(_, v)| v.into_owned())
                .collect();
            prop_assert_eq!(carried, vec![kept.clone()]);
        }
    }
    prop_assert_eq!(starts, 1);
    Ok(())
}

proptest! {
    #[test]
    fn no_accepted_rd_leaves_the_site(rd in rd_grammar()) {
        accepted_rd_stays_on_site(&rd)?;
    }

    #[test]
    fn no_accepted_arbitrary_string_leaves_the_site(rd in "/?\\PC{0,16}") {
        accepted_rd_stays_on_site(&rd)?;
    }

    #[test]
    fn sign_in_page_links_never_leave_the_site(rd in rd_grammar()) {
        sign_in_page_links_stay_on_site(&rd)?;
    }
}

/// The grammar is only useful if it produces accepted targets too.
#[test]
fn the_grammar_produces_accepted_and_refused_targets() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = rd_grammar();
    let accepted = (0..1000)
        .filter(|_| {
            let rd = strategy.new_tree(&mut runner).expect("a value").current();
            is_safe_rd(&rd)
        })
        .count();
    assert!((80..900).contains(&accepted), "{accepted} of 1000 accepted");
}

#[test]
#[ignore = "fuzz target: FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored"]
fn fuzz_rd() {
    crate::fuzz::fuzz("rd", rd_grammar(), |rd| accepted_rd_stays_on_site(&rd));
}

#[test]
#[ignore = "fuzz target: FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored"]
fn fuzz_sign_in_page() {
    crate::fuzz::fuzz("sign_in_page", rd_grammar(), |rd| {
        sign_in_page_links_stay_on_site(&rd)
    });
}

// === absolute `rd` and `[access] allowed_redirect_domains` ===

/// The pieces of absolute-URL tricks around the allowed hosts.
const URL_ATOMS: &[&str] = &[
    "example.com",
    "a.example.com",
    ".example.com",
    "app.test",
    "evil.com",
    "evil-",
    "-example.com",
    ".",
    "..",
    "@",
    ":",
    ":8443",
    ":443",
    ":80",
    "#",
    "?",
    "/",
    "//",
    "\\",
    "%2e",
    "%40",
    "%2f",
    "%5c",
    "%00",
    "\t",
    " ",
    "\u{430}",  // CYRILLIC SMALL LETTER A
    "\u{3002}", // IDEOGRAPHIC FULL STOP
    "\u{FF0E}", // FULLWIDTH FULL STOP
    "xn--",
    "user:pw@",
    "[::1]",
    "127.0.0.1",
];

/// Absolute `rd` values: a scheme-ish start, then host and path pieces.
fn absolute_rd() -> impl Strategy<Value = String> {
    let start = proptest::sample::select(
        &[
            "https://",
            "http://",
            "HTTPS://",
            "https:",
            "https:/",
            "https:///",
            "//",
            "javascript://",
            "ftp://",
            "https:\\\\",
        ][..],
    );
    let piece = prop_oneof![
        6 => proptest::sample::select(URL_ATOMS).prop_map(str::to_owned),
        2 => atom(),
    ];
    // Often an allowed host first, so that accepted URLs are common.
    let host = prop_oneof![
        3 => proptest::sample::select(&["a.example.com", "example.com", "app.test:8443"][..])
            .prop_map(str::to_owned),
        2 => piece.clone(),
    ];
    (start, host, proptest::collection::vec(piece, 0..8))
        .prop_map(|(start, host, pieces)| format!("{start}{host}{}", pieces.concat()))
}

/// `.example.com` and `app.test:8443`, as `[access] allowed_redirect_domains`.
fn allowed_hosts(url: &Url) -> bool {
    [".example.com", "app.test:8443"]
        .iter()
        .any(|e| AllowedHost::parse(e).unwrap().admits(url))
}

/// An accepted absolute `rd` is a plain http(s) URL, as the WHATWG parser
/// writes it, on an allowed host (label boundary, port) with no user info,
/// whose path would pass as a same-site `rd`; anything else is a same-site path.
fn accepted_absolute_rd_is_on_an_allowed_host(rd: &str) -> Result<(), TestCaseError> {
    let got = safe_rd_or_own_url(Some(rd), allowed_hosts);
    if got.starts_with('/') {
        prop_assert!(is_safe_rd(&got), "{rd:?} -> {got:?}");
        return Ok(());
    }
    let url = Url::parse(&got).map_err(|e| TestCaseError::fail(format!("{got:?}: {e}")))?;
    prop_assert_eq!(url.as_str(), got.as_str(), "not as the parser writes it");
    prop_assert!(matches!(url.scheme(), "http" | "https"), "{rd:?} -> {got}");
    prop_assert!(url.username().is_empty() && url.password().is_none());
    let host = match url.host() {
        Some(url::Host::Domain(host)) => host.to_owned(),
        other => return Err(TestCaseError::fail(format!("{rd:?} -> {other:?}"))),
    };
    let on_example = host == "example.com"
        || (host.ends_with(".example.com") && !host.starts_with('.') && !host.contains(".."));
    let on_app = host == "app.test" && url.port_or_known_default() == Some(8443);
    prop_assert!(
        (on_example && url.port().is_none()) || on_app,
        "{rd:?} -> {got}"
    );
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    prop_assert!(is_safe_rd(path), "{rd:?} -> {got}");
    Ok(())
}

proptest! {
    #[test]
    fn no_accepted_absolute_rd_leaves_the_allowed_hosts(rd in absolute_rd()) {
        accepted_absolute_rd_is_on_an_allowed_host(&rd)?;
    }
}

/// The absolute grammar is only useful if some of its URLs are accepted.
#[test]
fn the_absolute_grammar_produces_accepted_urls() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = absolute_rd();
    let accepted = (0..2000)
        .filter(|_| {
            let rd = strategy.new_tree(&mut runner).expect("a value").current();
            !safe_rd_or_own_url(Some(&rd), allowed_hosts).starts_with('/')
        })
        .count();
    assert!(accepted >= 50, "{accepted} of 2000 accepted");
}

#[test]
#[ignore = "fuzz target: FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored"]
fn fuzz_absolute_rd() {
    crate::fuzz::fuzz("absolute_rd", absolute_rd(), |rd| {
        accepted_absolute_rd_is_on_an_allowed_host(&rd)
    });
}
