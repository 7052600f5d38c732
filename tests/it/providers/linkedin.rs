//! LinkedIn ("Sign In with LinkedIn using OpenID Connect"): the issuer
//! `https://www.linkedin.com/oauth` has a path, the token endpoint accepts only
//! client_secret_post, the id_token has no `preferred_username` or `groups`, and
//! no `iss` comes back on the authorization response.

use portcullis::demo::idp::{
    ExtraClaim, IdpOptions, Layout, Misbehaviour, ResponseIss, demo_users,
};
use serde_json::Value;

use super::{assert_identity, assert_refused, harness, scopes, sign_in, upstream_view};

fn linkedin() -> IdpOptions {
    let extra_claims = demo_users()
        .iter()
        .flat_map(|u| {
            ["groups", "preferred_username"].map(|c| ExtraClaim::new(&u.sub, c, Value::Null))
        })
        .collect();
    IdpOptions {
        layout: Layout::UnderPath("/oauth".into()),
        token_auth_methods: vec!["client_secret_post".into()],
        response_iss: ResponseIss::Omitted,
        extra_claims,
        ..IdpOptions::default()
    }
}

const LINKEDIN: &str = r#"
[providers.linkedin]
kind = "linkedin"
issuer = "{demo_idp}"
client_id = "portcullis-demo"
client_secret = "demo-secret"
"#;

#[tokio::test]
async fn linkedin_signs_in_with_client_secret_post() {
    let h = harness(linkedin(), LINKEDIN).await;
    let mut b = h.browser();
    let (authorize, done) = sign_in(&mut b, &h, "linkedin", Some("grace")).await;
    let mut asked = scopes(&authorize);
    asked.sort();
    assert_eq!(asked, ["email", "openid", "profile"]);
    let app = upstream_view(&mut b, &h, &done).await;
    assert_identity(&app, "grace", Some("grace@example.com"), None, "linkedin");
    let seen = h.idp.token_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].client_auth, "post");
}

#[tokio::test]
async fn linkedin_token_endpoint_error_fails_the_sign_in_cleanly() {
    let h = harness(linkedin(), LINKEDIN).await;
    h.idp.misbehave(Misbehaviour::TokenEndpointError);
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "linkedin", Some("ada")).await;
    assert_refused(&b, &done, "invalid_grant");
}
