//! Google: OIDC at accounts.google.com; `hosted_domain` is sent as `hd` and
//! enforced on the verified id_token's `hd` claim, since a user can strip `hd`
//! from the authorization URL. Google may send `iss` without advertising it.

use http::StatusCode;
use portcullis::demo::idp::{ExtraClaim, IdpOptions, Misbehaviour, ResponseIss};

use super::{assert_identity, assert_refused, harness, scopes, sign_in, upstream_view};
use crate::support::param;

/// Ada is in the example.com Workspace, Grace in another one, Eve has a consumer account (no `hd`).
fn google() -> IdpOptions {
    IdpOptions {
        response_iss: ResponseIss::Unadvertised,
        extra_claims: vec![
            ExtraClaim::new("ada", "hd", "example.com".into()),
            ExtraClaim::new("grace", "hd", "other.example".into()),
        ],
        ..IdpOptions::default()
    }
}

const GOOGLE: &str = r#"
[providers.google]
kind = "google"
issuer = "{demo_idp}"
client_id = "portcullis-demo"
client_secret = "demo-secret"
hosted_domain = "example.com"
"#;

#[tokio::test]
async fn google_sends_hd_and_admits_a_user_of_the_hosted_domain() {
    let h = harness(google(), GOOGLE).await;
    let mut b = h.browser();
    let (authorize, done) = sign_in(&mut b, &h, "google", Some("ada")).await;
    assert_eq!(param(&authorize, "hd").as_deref(), Some("example.com"));
    assert!(
        scopes(&authorize).contains(&"openid".to_owned()),
        "{authorize}"
    );
    assert_eq!(
        param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let app = upstream_view(&mut b, &h, &done).await;
    assert_identity(
        &app,
        "ada",
        Some("ada@example.com"),
        Some("admins,engineering"),
        "google",
    );
}

#[tokio::test]
async fn google_refuses_users_outside_the_hosted_domain() {
    let h = harness(google(), GOOGLE).await;
    for user in ["grace", "eve"] {
        let mut b = h.browser();
        let (_, done) = sign_in(&mut b, &h, "google", Some(user)).await;
        assert_eq!(
            done.status,
            StatusCode::FORBIDDEN,
            "{user}: {}",
            done.text()
        );
        assert_refused(&b, &done, "domain");
    }
}

#[tokio::test]
async fn google_token_endpoint_error_fails_the_sign_in_cleanly() {
    let h = harness(google(), GOOGLE).await;
    h.idp.misbehave(Misbehaviour::TokenEndpointError);
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "google", Some("ada")).await;
    assert_refused(&b, &done, "invalid_grant");
}
