use figment::Figment;
use figment::providers::{Format, Toml};

use super::*;
use crate::config::from_figment;

const BASE: &str = r#"
[session]
secret = "0123456789abcdef0123456789abcdef"
[providers.corp]
issuer = "https://sso.example.com"
client_id = "portcullis"
"#;

fn config(toml: &str) -> Config {
    from_figment(Figment::from(Toml::string(&format!("{BASE}\n{toml}"))))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn routes(toml: &str) -> Routes {
    Routes::new(&config(toml), TaskTracker::new(), None).unwrap()
}

/// The url of the route `host` + `path` picks, or `None` (404), or the refusal.
fn pick(routes: &Routes, host: Option<&str>, path: &str) -> Result<Option<String>, PathRefused> {
    Ok(routes
        .route(host, path)?
        .map(|r| r.upstream_url_for_tests().to_owned()))
}

impl Route {
    fn upstream_url_for_tests(&self) -> String {
        format!(
            "{}{}",
            self.host
                .as_ref()
                .map(|h| h.to_string())
                .unwrap_or_default(),
            self.prefix
        )
    }
}

const TWO_APPS: &str = r#"
[[upstreams]]
host = "wiki.example.com"
url = "http://127.0.0.1:9001"
[[upstreams]]
host = "*.apps.example.com"
path_prefix = "/api/"
url = "http://127.0.0.1:9002"
[[upstreams]]
path_prefix = "/wiki"
url = "http://127.0.0.1:9003"
[[upstreams]]
path_prefix = "/Docs"
url = "http://127.0.0.1:9004"
"#;

fn got(r: &Routes, host: &str, path: &str) -> Option<String> {
    pick(r, Some(host), path).unwrap()
}

#[test]
fn an_exact_host_matches_in_any_case_with_any_port_and_a_trailing_dot() {
    let r = routes(TWO_APPS);
    let wiki = Some("wiki.example.com/".to_owned());
    for host in [
        "wiki.example.com",
        "WIKI.Example.COM",
        "wiki.example.com:8443",
        "wiki.example.com.",
        "wiki.example.com.:80",
    ] {
        assert_eq!(got(&r, host, "/x"), wiki, "{host}");
    }
    for host in [
        "wiki.example.com.evil",
        "xwiki.example.com",
        "example.com",
        "",
    ] {
        assert_ne!(got(&r, host, "/x"), wiki, "{host}");
    }
    assert_eq!(
        pick(&r, None, "/x").unwrap(),
        None,
        "no Host, no host route"
    );
}

#[test]
fn a_wildcard_host_matches_subdomains_on_a_label_boundary_never_the_domain_itself() {
    let r = routes(TWO_APPS);
    let api = Some("*.apps.example.com/api".to_owned());
    for host in [
        "a.apps.example.com",
        "a.b.apps.example.com",
        "A.APPS.example.com:1",
    ] {
        assert_eq!(got(&r, host, "/api/x"), api, "{host}");
    }
    for host in [
        "apps.example.com",
        "evilapps.example.com",
        ".apps.example.com",
        "a.apps.example.com.evil",
    ] {
        assert_ne!(got(&r, host, "/api/x"), api, "{host}");
    }
}

#[test]
fn a_prefix_matches_on_segment_boundaries_with_or_without_its_trailing_slash() {
    let r = routes(TWO_APPS);
    let wiki = Some("/wiki".to_owned());
    for path in ["/wiki", "/wiki/", "/wiki/page", "/wiki/a/b"] {
        assert_eq!(got(&r, "other.example", path), wiki, "{path}");
    }
    for path in ["/wikipedia", "/wiki-x", "/", "/w"] {
        assert_eq!(got(&r, "other.example", path), None, "{path}");
    }
    // "/api/" is the same prefix as "/api".
    assert_eq!(
        got(&r, "a.apps.example.com", "/api"),
        Some("*.apps.example.com/api".to_owned())
    );
    assert_eq!(got(&r, "a.apps.example.com", "/apix"), None);
}

#[test]
fn routes_are_tried_in_order_and_the_first_match_wins() {
    let r = routes(TWO_APPS);
    // wiki.example.com takes every path, /wiki included.
    assert_eq!(
        got(&r, "wiki.example.com", "/wiki/x"),
        Some("wiki.example.com/".to_owned())
    );
    // Elsewhere /wiki goes to the path route.
    assert_eq!(
        got(&r, "a.apps.example.com", "/wiki/x"),
        Some("/wiki".to_owned())
    );
}

#[test]
fn upstream_takes_what_no_route_does_and_without_it_nothing_does() {
    let with = routes(&format!(
        "[upstream]\nurl = \"http://127.0.0.1:9000\"\n{TWO_APPS}"
    ));
    assert_eq!(got(&with, "other.example", "/x"), Some("/".to_owned()));
    let without = routes(TWO_APPS);
    assert_eq!(got(&without, "other.example", "/x"), None);
}

#[test]
fn one_upstream_is_one_route_that_takes_everything_without_reading_the_path() {
    let r = routes("[upstream]\nurl = \"http://127.0.0.1:9000\"");
    assert!(r.only_one);
    // Not even a path the rules refuse: they say so themselves.
    assert_eq!(pick(&r, None, "/a/../b").unwrap(), Some("/".to_owned()));
    let default = routes("");
    assert!(
        default.only_one,
        "no [upstream] and no [[upstreams]]: the default upstream"
    );
}

#[test]
fn the_route_is_chosen_on_every_reading_of_the_path() {
    let r = routes(TWO_APPS);
    // Decoded, `//` collapsed: read as /wiki/x by every upstream.
    for path in ["/%77iki/x", "//wiki/x", "/wiki/x;p", "/w%69ki/"] {
        assert_eq!(
            got(&r, "other.example", path),
            Some("/wiki".to_owned()),
            "{path}"
        );
    }
    // `/wiki;p/x` is /wiki/x to a servlet container, which cuts `;p`, and
    // `/wiki./x` to Windows, which drops the dot; to others it is no route.
    for path in ["/wiki;p/x", "/wiki./x", "/wiki::$DATA/x"] {
        assert_eq!(
            pick(&r, Some("other.example"), path),
            Err(PathRefused::AmbiguousRoute),
            "{path}"
        );
    }
    // Case: /WIKI is /wiki for a case-insensitive upstream, but no route for a
    // case-sensitive reading: the readings disagree, so it is refused.
    assert_eq!(
        pick(&r, Some("other.example"), "/WIKI/x"),
        Err(PathRefused::AmbiguousRoute)
    );
    // Prefixes with capitals compare folded too.
    assert_eq!(
        got(&r, "other.example", "/Docs/x"),
        Some("/Docs".to_owned())
    );
    assert_eq!(
        pick(&r, Some("other.example"), "/docs/x"),
        Err(PathRefused::AmbiguousRoute)
    );
    // What the readings refuse is refused before any route is chosen.
    assert_eq!(
        pick(&r, Some("other.example"), "/wiki/../admin"),
        Err(PathRefused::DotSegments)
    );
}

#[test]
fn with_case_sensitive_paths_case_picks_no_route() {
    let r = routes(&format!(
        "[access]\ncase_sensitive_paths = true\n{TWO_APPS}"
    ));
    assert_eq!(got(&r, "other.example", "/WIKI/x"), None);
    assert_eq!(got(&r, "other.example", "/docs/x"), None);
}

#[test]
fn a_path_that_straddles_two_routes_is_refused_even_with_a_catch_all() {
    let r = routes(&format!(
        "[upstream]\nurl = \"http://127.0.0.1:9000\"\n{TWO_APPS}"
    ));
    // Without the route: the catch-all, with other rules.
    for path in ["/wiki;p/x", "/wiki%20/x", "/wiki./x"] {
        assert_eq!(
            pick(&r, Some("other.example"), path),
            Err(PathRefused::AmbiguousRoute),
            "{path}"
        );
    }
    assert_eq!(
        pick(&r, Some("other.example"), "/wiki.x/y"),
        Ok(Some("/".to_owned())),
        "/wiki.x is not under /wiki"
    );
    assert_eq!(
        pick(&r, Some("other.example"), "/wik%69/x"),
        Ok(Some("/wiki".to_owned()))
    );
}

#[test]
fn host_patterns_are_validated() {
    for bad in [
        "",
        "*",
        "*.",
        "a.*.com",
        "wiki.example.com:443",
        "http://x",
        "a..b",
        "a b",
        "x.com.",
    ] {
        assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        HostPattern::parse("Wiki.Example.com").unwrap(),
        HostPattern::Exact("wiki.example.com".into())
    );
    assert_eq!(
        HostPattern::parse("*.Example.com").unwrap(),
        HostPattern::Subdomains(".example.com".into())
    );
}

#[test]
fn path_prefixes_are_validated() {
    for bad in [
        "wiki", "/a//b", "/a/../b", "/./a", "/a%2Fb", "/a*", "/a?b", "/a;b", "/a b", "/a\\b",
    ] {
        assert!(PathPrefix::parse(bad).is_err(), "{bad:?}");
    }
    assert!(PathPrefix::parse("/").unwrap().is_root());
    assert_eq!(
        PathPrefix::parse("/wiki/").unwrap(),
        PathPrefix::parse("/wiki").unwrap()
    );
}

#[test]
fn the_spoof_guard_covers_every_routes_headers_and_claims_are_their_union() {
    let r = routes(
        r#"
[upstream]
url = "http://127.0.0.1:9000"
[headers]
"X-User" = "sub"
[[upstreams]]
host = "b.example.com"
url = "https://127.0.0.1:9001"
pass_id_token = true
[upstreams.headers]
"X-B-Email" = "email"
"X-B-Dept" = "department"
"#,
    );
    let mut names = r.protected_headers();
    names.sort();
    assert_eq!(
        names,
        [
            "authorization",
            "x-b-dept",
            "x-b-email",
            "x-forwarded-access-token",
            "x-portcullis-assertion",
            "x-user"
        ]
    );
    let mut claims: Vec<&str> = r.wanted_claims().collect();
    claims.sort();
    assert_eq!(claims, ["department", "email", "sub"]);
    assert!(r.passes_id_token() && !r.passes_access_token());
    assert_eq!(r.header_sets().len(), 2);
}

#[test]
fn routes_with_the_same_header_map_share_one_set() {
    let r = routes(TWO_APPS);
    assert_eq!(r.header_sets().len(), 1);
}

#[test]
fn every_route_shares_one_tunnel_tracker() {
    let r = routes(&format!(
        "[upstream]\nurl = \"http://127.0.0.1:9000\"\n{TWO_APPS}"
    ));
    let tracker = r.tunnels();
    let _task = tracker.token();
    for route in r.routes.iter() {
        assert_eq!(route.upstream.tunnels().len(), 1, "one tracker for all");
    }
}

#[test]
fn a_request_is_routed_by_host_else_by_its_authority() {
    let r = routes(TWO_APPS);
    let by = |req: Request<()>| {
        r.route_request(&req)
            .unwrap()
            .map(|route| route.upstream_url_for_tests())
    };
    let host = Request::builder()
        .uri("/x")
        .header("host", "wiki.example.com:443")
        .body(())
        .unwrap();
    assert_eq!(by(host), Some("wiki.example.com/".to_owned()));
    // HTTP/2 without a `host` header: `:authority`.
    let h2 = Request::builder()
        .version(http::Version::HTTP_2)
        .uri("https://wiki.example.com/x")
        .body(())
        .unwrap();
    assert_eq!(by(h2), Some("wiki.example.com/".to_owned()));
    // Never X-Forwarded-Host.
    let forwarded = Request::builder()
        .uri("/x")
        .header("host", "other.example")
        .header("x-forwarded-host", "wiki.example.com")
        .body(())
        .unwrap();
    assert_eq!(by(forwarded), None);
}

#[test]
fn a_host_gets_the_session_cookie_only_as_public_url_or_under_session_domain() {
    let exact = HostPattern::parse("wiki.example.com").unwrap();
    let wild = HostPattern::parse("*.example.com").unwrap();
    let public = "app.example.com";
    assert!(!exact.gets_session_cookie(public, None));
    assert!(!wild.gets_session_cookie(public, None));
    assert!(
        HostPattern::parse("App.Example.com")
            .unwrap()
            .gets_session_cookie(public, None)
    );
    for domain in ["example.com", ".example.com", "Example.COM"] {
        assert!(exact.gets_session_cookie(public, Some(domain)), "{domain}");
        assert!(wild.gets_session_cookie(public, Some(domain)), "{domain}");
    }
    for domain in ["wiki.example.com", "ample.com", "other.com"] {
        assert!(!wild.gets_session_cookie(public, Some(domain)), "{domain}");
    }
    assert!(exact.gets_session_cookie(public, Some("wiki.example.com")));
    assert!(!exact.gets_session_cookie(public, Some("ample.com")));
    assert!(!exact.gets_session_cookie(public, Some("iki.example.com")));
}

#[test]
fn an_absolute_rd_passes_on_public_url_a_route_host_or_an_allowed_domain_only() {
    let url = |s: &str| url::Url::parse(s).unwrap();
    // BASE's [session] table, with the shared cookie domain.
    let config = from_figment(Figment::from(Toml::string(&format!(
        "{}{}",
        BASE.replace("[session]\n", "[session]\ndomain = \"example.com\"\n"),
        r#"
[server]
public_url = "https://auth.example.com"
[access]
allowed_redirect_domains = [".apps.example.net", "tool.example.org:8443"]
[[upstreams]]
host = "wiki.example.com"
url = "http://127.0.0.1:9000"
"#
    ))))
    .unwrap();
    let https = Routes::new(&config, TaskTracker::new(), None).unwrap();
    for ok in [
        "https://auth.example.com/x",
        "https://wiki.example.com/",
        "https://apps.example.net/",
        "https://a.apps.example.net/x?y=1",
        "https://tool.example.org:8443/",
    ] {
        assert!(https.sends_back_to(&url(ok)), "{ok}");
    }
    for refused in [
        // Another scheme or port than allowed.
        "http://auth.example.com/",
        "http://wiki.example.com/",
        "https://wiki.example.com:8443/",
        "http://a.apps.example.net/",
        "https://a.apps.example.net:8443/",
        "https://tool.example.org/",
        // Not on a label boundary, or not listed.
        "https://evil-apps.example.net/",
        "https://apps.example.net.evil/",
        "https://other.example.com/",
        "https://example.org/",
    ] {
        assert!(!https.sends_back_to(&url(refused)), "{refused}");
    }
    let http = routes(
        r#"
[server]
public_url = "http://127.0.0.1:4180"
[access]
allowed_redirect_domains = [".apps.test:*"]
"#,
    );
    assert!(http.sends_back_to(&url("http://a.apps.test:8080/")));
    assert!(http.sends_back_to(&url("https://a.apps.test/")));
    assert!(!http.sends_back_to(&url("http://a.apps.testx/")));
}
