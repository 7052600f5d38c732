//! `GET /oauth2/auth` (DESIGN §3, §8.4): the original method and URI a trusted
//! front proxy names drive rule matching; anyone else gets the default rule.

use http::{Method, StatusCode};

use crate::support::{Browser, Harness, Setup};

/// A public prefix, a public exact path, and POSTs under `/admin/` for admins
/// only (other methods there fall through to "signed in").
const RULES: &str = r#"
[[rules]]
path = "/public/"
public = true
[[rules]]
path = "/status"
public = true
[[rules]]
path = "/admin/**"
methods = ["POST"]
groups = ["admins"]
"#;

/// How the original request is named: `(method header, URI header)`, as
/// Traefik and Caddy send them, then as nginx is told to.
const FAMILIES: [(&str, &str); 2] = [
    ("x-forwarded-method", "x-forwarded-uri"),
    ("x-original-method", "x-original-uri"),
];

async fn behind_trusted_proxy() -> Harness {
    Harness::with(Setup {
        server_toml: "trusted_proxies = [\"127.0.0.0/8\"]".into(),
        extra_toml: RULES.into(),
        ..Setup::default()
    })
    .await
}

/// The forward-auth answer for the original request `method uri`, named with
/// the headers of `family`.
async fn auth(
    h: &Harness,
    b: &mut Browser,
    family: (&str, &str),
    method: &str,
    uri: &str,
) -> StatusCode {
    b.request(
        Method::GET,
        &h.url("/oauth2/auth"),
        &[(family.0, method), (family.1, uri)],
        Default::default(),
    )
    .await
    .status
}

#[tokio::test]
async fn trusted_original_uri_picks_the_rule_in_either_spelling() {
    let h = behind_trusted_proxy().await;
    let mut b = h.browser();
    for family in FAMILIES {
        for (uri, want) in [
            ("/public/x", StatusCode::ACCEPTED),
            ("/public/x?next=/private", StatusCode::ACCEPTED),
            // The query is not part of the path the rules match.
            ("/status?verbose=1", StatusCode::ACCEPTED),
            ("/private", StatusCode::UNAUTHORIZED),
            ("/private?to=/public/x", StatusCode::UNAUTHORIZED),
        ] {
            assert_eq!(
                auth(&h, &mut b, family, "GET", uri).await,
                want,
                "anonymous {family:?} GET {uri}"
            );
        }
    }
    // Nothing said: the default rule.
    let resp = b
        .request(Method::GET, &h.url("/oauth2/auth"), &[], Default::default())
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn trusted_original_method_picks_the_rule_in_either_spelling() {
    let h = behind_trusted_proxy().await;
    let mut grace = h.signed_in("grace").await;
    let mut ada = h.signed_in("ada").await;
    let mut anonymous = h.browser();
    for family in FAMILIES {
        assert_eq!(
            auth(&h, &mut grace, family, "POST", "/admin/users").await,
            StatusCode::FORBIDDEN,
            "grace is not in admins: {family:?}"
        );
        assert_eq!(
            auth(&h, &mut grace, family, "GET", "/admin/users").await,
            StatusCode::ACCEPTED,
            "the POST rule does not apply to a GET: {family:?}"
        );
        assert_eq!(
            auth(&h, &mut ada, family, "POST", "/admin/users").await,
            StatusCode::ACCEPTED,
            "ada is in admins: {family:?}"
        );
        assert_eq!(
            auth(&h, &mut anonymous, family, "POST", "/admin/users").await,
            StatusCode::UNAUTHORIZED,
            "{family:?}"
        );
    }
}

#[tokio::test]
async fn trusted_original_uri_with_dot_segments_is_refused() {
    let h = behind_trusted_proxy().await;
    let mut anonymous = h.browser();
    let mut grace = h.signed_in("grace").await;
    for family in FAMILIES {
        for uri in [
            "/private/../public/x",
            "/private/%2e%2e/public/x",
            "/private/%2E%2E/public/x",
            "/public/./x",
            "/public/%2e/x",
        ] {
            assert_eq!(
                auth(&h, &mut anonymous, family, "GET", uri).await,
                StatusCode::FORBIDDEN,
                "anonymous {family:?} GET {uri}"
            );
        }
        // Resolved, it is public; an upstream may serve it as `/admin/..`, to
        // which grace may not POST.
        // Refused for its dot segments, not by the admins rule a raw match
        // would have picked: both answer 403.
        let resp = grace
            .request(
                Method::GET,
                &h.url("/oauth2/auth"),
                &[(family.0, "POST"), (family.1, "/admin/%2e%2e/public/x")],
                Default::default(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "grace {family:?}");
        assert!(
            resp.text().contains("`.` or `..` segments"),
            "grace {family:?}: {}",
            resp.text()
        );
    }
}

#[tokio::test]
async fn trusted_original_uri_is_judged_under_every_reading() {
    let h = behind_trusted_proxy().await;
    let mut anonymous = h.browser();
    let mut grace = h.signed_in("grace").await;
    for family in FAMILIES {
        // nginx passes `$request_uri` on as it came: a `//` run could be read
        // as a host by the upstream, and cannot be collapsed here.
        for uri in [
            "//public/private",
            "/public//x",
            "/public/..\\private",
            "/public/%252e%252e/x",
        ] {
            assert_eq!(
                auth(&h, &mut anonymous, family, "GET", uri).await,
                StatusCode::FORBIDDEN,
                "anonymous {family:?} GET {uri}"
            );
        }
        // Read case-insensitively it is the admins' rule.
        for uri in ["/ADMIN/users", "/admin\\users", "/admin./users"] {
            assert_eq!(
                auth(&h, &mut grace, family, "POST", uri).await,
                StatusCode::FORBIDDEN,
                "grace {family:?} POST {uri}"
            );
        }
    }
}

#[tokio::test]
async fn untrusted_original_uri_and_method_are_ignored() {
    let h = Harness::with(Setup {
        extra_toml: RULES.into(),
        ..Setup::default()
    })
    .await;
    let mut anonymous = h.browser();
    let mut grace = h.signed_in("grace").await;
    for family in FAMILIES {
        assert_eq!(
            auth(&h, &mut anonymous, family, "GET", "/public/x").await,
            StatusCode::UNAUTHORIZED,
            "{family:?} from an untrusted peer picked the public rule"
        );
        // Nor is a dot-segment URI judged at all: the default rule applies.
        assert_eq!(
            auth(&h, &mut anonymous, family, "GET", "/private/../public/x").await,
            StatusCode::UNAUTHORIZED,
            "{family:?}"
        );
        assert_eq!(
            auth(&h, &mut grace, family, "POST", "/admin/users").await,
            StatusCode::ACCEPTED,
            "{family:?} from an untrusted peer picked the admins rule"
        );
    }
}

#[tokio::test]
async fn an_original_request_named_two_ways_or_half_named_is_refused() {
    let h = behind_trusted_proxy().await;
    let mut b = h.browser();
    for headers in [
        // nginx names the request; the client adds the other family to pick
        // a laxer rule.
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/private"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public/x"),
        ][..],
        // A URI without its method could match a rule meant for another one.
        &[("x-original-uri", "/public/x")][..],
        &[("x-forwarded-method", "GET")][..],
        // Twice the same header: which one nginx set cannot be told.
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/private"),
            ("x-forwarded-uri", "/public/x"),
        ][..],
    ] {
        let resp = b
            .request(
                Method::GET,
                &h.url("/oauth2/auth"),
                headers,
                Default::default(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    // Both families naming the same request are fine.
    let resp = b
        .request(
            Method::GET,
            &h.url("/oauth2/auth"),
            &[
                ("x-original-method", "GET"),
                ("x-original-uri", "/public/x"),
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/public/x"),
            ],
            Default::default(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
}
