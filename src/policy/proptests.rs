//! Item 1 of issue #10 as a property: for any path, either it is refused, or
//! what the rules ask of it covers what they ask of every path a common
//! upstream would serve for it. The upstreams here are written apart from
//! `readings.rs`, from how those servers behave (and the `url` crate, a WHATWG
//! URL parser, for Node, Deno and Bun), so the property is not the code
//! checking itself.

use proptest::prelude::*;
use unicode_normalization::UnicodeNormalization;

use super::*;
use crate::config::from_figment;
use figment::Figment;
use figment::providers::{Format, Toml};

const RULES: &str = r#"
[session]
secret = "0123456789abcdef0123456789abcdef"
[providers.idp]
issuer = "https://idp.example"
client_id = "c"
[[rules]]
path = "/public/"
public = true
[[rules]]
path = "/admin/**"
groups = ["admins"]
[[rules]]
path = "/api/*/x"
api = true
[[rules]]
path = "/static/*.css"
public = true
[[rules]]
path = "/Reports/**"
groups = ["finance"]
"#;

/// The policy with each combination of the two path options, made once.
fn policy(case_sensitive: bool, encoded_slashes: bool) -> &'static Policy {
    static POLICIES: std::sync::LazyLock<Vec<Policy>> = std::sync::LazyLock::new(|| {
        [(false, false), (false, true), (true, false), (true, true)]
            .map(|(case_sensitive, encoded_slashes)| {
                let toml = format!(
                    "{RULES}\n[access]\ncase_sensitive_paths = {case_sensitive}\nallow_encoded_slashes = {encoded_slashes}\n"
                );
                Policy::new(&from_figment(Figment::from(Toml::string(&toml))).unwrap()).unwrap()
            })
            .into()
    });
    &POLICIES[usize::from(case_sensitive) * 2 + usize::from(encoded_slashes)]
}

/// Pieces of paths: separators and their encodings, dot segments and theirs,
/// rule names in other cases and other scripts, Windows and Java syntax.
const PIECES: &[&str] = &[
    "/",
    "//",
    "\\",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    ".",
    "..",
    "%2e",
    "%2E",
    "%252e",
    "%252f",
    "%25",
    ";",
    ";x",
    ":",
    "::$DATA",
    "~1",
    " ",
    "%20",
    "%09",
    "admin",
    "ADMIN",
    "Admin",
    "public",
    "Public",
    "api",
    "static",
    "a.css",
    "reports",
    "REPORTS",
    "x",
    "%EF%BD%81",
    "\u{ff41}",
    "%EF%BC%8F",
    "%00",
    "%c0%ae",
    "%u002e",
    "%",
    "%41",
    "%61dmin",
    "\u{e9}",
    "@",
];

fn raw_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..8)
        .prop_map(|pieces| format!("/{}", pieces.concat()))
}

/// A path as an upstream serves it: the path, and whether it matches
/// routes case-insensitively.
struct Served {
    path: String,
    folded: bool,
}

/// What each upstream serves for `forwarded`; `None` where it would refuse
/// the request itself. Every one resolves dot segments, as servers do.
fn upstreams(forwarded: &str, case_sensitive: bool) -> Vec<(&'static str, Option<Served>)> {
    let decoded = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|d| d.into_owned())
    };
    let served = |path: Option<String>, folded: bool| {
        path.map(|p| Served {
            path: if folded { p.to_lowercase() } else { p },
            folded,
        })
    };
    let mut all = vec![
        (
            "rfc3986",
            served(decoded(forwarded).map(|p| resolve(&p, &['/'])), false),
        ),
        (
            "servlet",
            served(
                decoded(&map_segments(forwarded, |s| {
                    s.split(';').next().unwrap_or("")
                }))
                .map(|p| resolve(&p, &['/'])),
                false,
            ),
        ),
        (
            "decoded twice",
            served(
                decoded(forwarded)
                    .and_then(|p| decoded(&p))
                    .map(|p| resolve(&p, &['/'])),
                false,
            ),
        ),
        (
            "nfkc",
            served(
                decoded(forwarded).map(|p| resolve(&p.nfkc().collect::<String>(), &['/'])),
                false,
            ),
        ),
    ];
    if !case_sensitive {
        all.push((
            "express",
            served(decoded(forwarded).map(|p| resolve(&p, &['/'])), true),
        ));
        let iis = decoded(forwarded).map(|p| {
            let p = resolve(&p, &['/', '\\']);
            map_segments(&p, |s| {
                s.split(':')
                    .next()
                    .unwrap_or("")
                    .trim_end_matches(['.', ' '])
            })
        });
        all.push(("iis", served(iis, true)));
    }
    // Node, Deno, Bun: `new URL(req.url, base)`.
    let base = url::Url::parse("http://app.internal/").unwrap();
    let whatwg = base.join(forwarded).ok().map(|u| {
        assert_eq!(
            u.host_str(),
            Some("app.internal"),
            "{forwarded:?} is read as a URL for another host"
        );
        u.path().to_owned()
    });
    all.push(("whatwg", served(whatwg.and_then(|p| decoded(&p)), false)));
    all
}

fn map_segments(s: &str, f: impl Fn(&str) -> &str) -> String {
    s.split('/').map(f).collect::<Vec<_>>().join("/")
}

/// RFC 3986 §5.2.4 over segments split at any of `separators`; empty
/// segments dropped but a trailing one.
fn resolve(path: &str, separators: &[char]) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split(separators).collect();
    let mut trailing = false;
    for (i, seg) in segments.iter().enumerate().skip(1) {
        trailing = i == segments.len() - 1 && matches!(*seg, "" | "." | "..");
        match *seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut resolved = format!("/{}", out.join("/"));
    if trailing && resolved.len() > 1 {
        resolved.push('/');
    }
    resolved
}

/// Whether meeting `judged` means meeting `theirs`.
fn covers(judged: &Requirement<'_>, theirs: &Requirement<'_>) -> bool {
    match (judged, theirs) {
        (_, Requirement::Public | Requirement::Preflight) => true,
        (Requirement::Public | Requirement::Preflight, Requirement::SignedIn { .. }) => false,
        (Requirement::SignedIn { admits, .. }, Requirement::SignedIn { admits: needed, .. }) => {
            needed.0.iter().all(|who| admits.0.contains(who))
        }
    }
}

/// The path, and the two options an operator may set.
fn judged_path() -> impl Strategy<Value = (String, bool, bool)> {
    (raw_path(), any::<bool>(), any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn a_path_is_refused_or_its_verdict_covers_every_upstreams_reading(
        (raw, case_sensitive, encoded_slashes) in judged_path(),
    ) {
        check_path(&raw, case_sensitive, encoded_slashes)?;
    }
}

#[test]
#[ignore = "fuzz target: FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored"]
fn fuzz_path_readings() {
    crate::fuzz::fuzz(
        "path_readings",
        judged_path(),
        |(raw, case_sensitive, encoded_slashes)| check_path(&raw, case_sensitive, encoded_slashes),
    );
}

fn check_path(raw: &str, case_sensitive: bool, encoded_slashes: bool) -> Result<(), TestCaseError> {
    let p = policy(case_sensitive, encoded_slashes);
    let Ok(judged) = p.judge(&Method::GET, raw) else {
        return Ok(());
    };
    let forwarded = collapse_slashes(raw).unwrap_or_else(|| raw.to_owned());
    for (upstream, served) in upstreams(&forwarded, case_sensitive) {
        let Some(served) = served else { continue };
        let theirs = p.requirement(
            &Method::GET,
            &Reading {
                path: served.path.as_str().into(),
                folded: served.folded,
            },
            None,
            false,
        );
        prop_assert!(
            covers(&judged, &theirs),
            "{raw:?} judged {judged:?}, but {upstream} serves {:?}, which needs {theirs:?}",
            served.path
        );
    }
    Ok(())
}

#[test]
fn the_issues_paths_hold_under_the_property() {
    for raw in [
        "//public/private",
        "///public/private",
        "//evil/admin/x",
        "/public/..\\private",
        "/public/..%5cprivate",
        "/admin\\x",
        "/admin%5cx",
        "/ADMIN/x",
        "/Admin/x",
        "/admin./x",
        "/admin%20/x",
        "/admin::$INDEX_ALLOCATION/x",
        "/admin~1/x",
        "/%EF%BD%81dmin/x",
        "/public/%252e%252e/admin",
        "/public/%c0%ae%c0%ae/admin",
        "/public/%u002e%u002e/admin",
        "/public/..%00/admin",
        "/public/..%20/admin",
    ] {
        for (case_sensitive, encoded_slashes) in [(false, false), (false, true), (true, true)] {
            check_path(raw, case_sensitive, encoded_slashes).unwrap();
        }
    }
}

/// A `host` rule, for the property below.
fn host_policy() -> &'static Policy {
    static POLICY: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(|| {
        let toml = "[session]\nsecret = \"0123456789abcdef0123456789abcdef\"\n[providers.idp]\nissuer = \"https://idp.example\"\nclient_id = \"c\"\n[[rules]]\nhost = \"*.example.com\"\npath = \"/**\"\npublic = true\n";
        Policy::new(&from_figment(Figment::from(Toml::string(toml))).unwrap()).unwrap()
    });
    &POLICY
}

/// Hosts a client may send: near misses of `example.com` (other labels, `@`,
/// case, ports, trailing dots, suffixes), and anything without `/`.
fn client_host() -> impl Strategy<Value = String> {
    "(([a-zA-Z0-9@._-]{0,8}\\.)?(evil)?(example\\.com|EXAMPLE\\.com|example\\.co)\\.?(\\.evil)?(:[0-9]{1,5})?|[^/]{0,20})"
}

/// A `*.example.com` rule takes the request exactly when the host, without
/// its port and trailing dots and in any case, is one or more labels
/// followed by `.example.com`.
fn check_host(host: &str) -> Result<(), TestCaseError> {
    let judged = host_policy()
        .judge_request(&Method::GET, "/x", Some(host), false)
        .unwrap();
    let bare = host
        .split(':')
        .next()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let label = bare
        .strip_suffix(".example.com")
        .is_some_and(|rest| !rest.is_empty() && !rest.ends_with('.'));
    prop_assert_eq!(judged == Requirement::Public, label, "{:?}", host);
    Ok(())
}

proptest! {
    /// Whatever `Host` a client sends, a `*.example.com` rule matches it on
    /// label boundaries only.
    #[test]
    fn a_subdomain_host_rule_matches_on_label_boundaries_only(host in client_host()) {
        check_host(&host)?;
    }
}

#[test]
#[ignore = "fuzz target: FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored"]
fn fuzz_host_rule() {
    crate::fuzz::fuzz("host_rule", client_host(), |host| check_host(&host));
}
