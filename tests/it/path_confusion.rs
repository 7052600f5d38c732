//! Issue #10, item 1: what the rules judge is what the upstream serves.
//! Each path below reached the upstream past a rule before: a public rule on
//! `/public/`, `groups = ["admins"]` on `/admin/**`; grace is not an admin,
//! ada is.

use http::StatusCode;

use crate::support::{Harness, Setup};

const RULES: &str = r#"
[[rules]]
path = "/public/"
public = true
[[rules]]
path = "/admin/**"
groups = ["admins"]
"#;

async fn harness() -> Harness {
    Harness::with(Setup {
        extra_toml: RULES.into(),
        ..Setup::default()
    })
    .await
}

#[tokio::test]
async fn a_path_with_a_slash_run_is_forwarded_as_it_was_judged() {
    let h = harness().await;
    let mut anonymous = h.browser();
    // Judged `/public/private`; forwarded as `//public/private`, Node's and
    // Python's URL joining read `public` as a host and served `/private`.
    for path in ["//public/private", "///public/private", "/public//private"] {
        let resp = anonymous.get_json(&h.url(path)).await;
        assert_eq!(resp.status, StatusCode::OK, "{path}");
        assert_eq!(resp.json()["uri"], "/public/private", "{path}");
    }
    let resp = anonymous.get_json(&h.url("//public/private?a=1//2")).await;
    assert_eq!(
        resp.json()["uri"],
        "/public/private?a=1//2",
        "the query is kept"
    );

    let mut grace = h.signed_in("grace").await;
    let resp = grace.get_json(&h.url("//evil/admin/x")).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.json()["uri"], "/evil/admin/x", "not an admin page");
}

#[tokio::test]
async fn every_reading_of_a_restricted_path_keeps_its_rule() {
    let h = harness().await;
    let mut grace = h.signed_in("grace").await;
    let mut ada = h.signed_in("ada").await;
    // Case-insensitive routers, `\` as a separator, Windows' trailing dots,
    // spaces and streams, NFKC: each is read as `/admin/x` somewhere.
    for path in [
        "/admin\\x",
        "/ADMIN/x",
        "/Admin/x",
        "/admin./x",
        "/admin%20/x",
        "/admin::$INDEX_ALLOCATION/x",
        "/%EF%BD%81dmin/x",
        "/admin;x/panel",
    ] {
        let resp = grace.get_json(&h.url(path)).await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "grace {path}");
        assert_eq!(resp.json()["error"], "forbidden", "grace {path}");
        // The strictest verdict, not a refusal: an admin gets through.
        assert_eq!(
            ada.get_json(&h.url(path)).await.status,
            StatusCode::OK,
            "ada {path}"
        );
    }
    // What no reading can resolve safely is refused for everyone.
    for path in ["/admin%5cx", "/admin~1/x", "/admin%2fx"] {
        for b in [&mut grace, &mut ada] {
            let resp = b.get_json(&h.url(path)).await;
            assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(resp.json()["error"], "invalid_request", "{path}");
        }
    }
}

#[tokio::test]
async fn a_public_rule_cannot_be_left_through_another_reading() {
    let h = harness().await;
    let mut anonymous = h.browser();
    for path in [
        "/public/..\\private",
        "/public/..%5cprivate",
        "/public/%252e%252e/private",
        "/public/%c0%ae%c0%ae/private",
        "/public/%u002e%u002e/private",
        "/public/..%00/private",
        "/public/..%20/private",
        "/public/..;/private",
    ] {
        let resp = anonymous.get_json(&h.url(path)).await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(resp.json()["error"], "invalid_request", "{path}");
    }
    // Another case of a public path is not public for a case-sensitive
    // reading: sign in first.
    let resp = anonymous.get_json(&h.url("/PUBLIC/x")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_operator_can_declare_a_case_sensitive_upstream_and_encoded_slashes() {
    let h = Harness::with(Setup {
        extra_toml: format!(
            "{RULES}\n[access]\ncase_sensitive_paths = true\nallow_encoded_slashes = true\n"
        ),
        ..Setup::default()
    })
    .await;
    let mut grace = h.signed_in("grace").await;
    // To a case-sensitive upstream `/Admin/x` is not `/admin/x`.
    assert_eq!(
        grace.get_json(&h.url("/Admin/x")).await.status,
        StatusCode::OK
    );
    // An encoded slash is data to some upstreams, a separator to others:
    // both readings are judged, and the raw path is forwarded.
    let resp = grace.get_json(&h.url("/files/a%2Fb")).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.json()["uri"], "/files/a%2Fb");
    assert_eq!(
        grace.get_json(&h.url("/x%2F..%2Fadmin/x")).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        grace.get_json(&h.url("/admin%2Fx")).await.status,
        StatusCode::FORBIDDEN
    );
}
