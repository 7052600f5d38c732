//! GitLab (gitlab.com or self-hosted at a base URL): OIDC whose id_token carries
//! only `sub`, `email`, `email_verified` and `groups_direct`; `groups` (every
//! group, with ancestors), `name` and `nickname` come from userinfo, as GitLab's
//! "OpenID Connect provider" documentation lists them.

use portcullis::demo::idp::{
    ClaimPlace, ExtraClaim, IdpOptions, Misbehaviour, ResponseIss, demo_users,
};
use serde_json::{Value, json};

use super::{assert_identity, assert_refused, harness, sign_in, upstream_view};

fn gitlab() -> IdpOptions {
    let mut extra_claims = Vec::new();
    for user in demo_users() {
        let sub = user.sub.as_str();
        for claim in ["groups", "name", "preferred_username"] {
            extra_claims
                .push(ExtraClaim::new(sub, claim, Value::Null).only_in(ClaimPlace::IdToken));
        }
        let direct: Vec<&String> = user.groups.iter().take(1).collect();
        extra_claims.push(
            ExtraClaim::new(sub, "groups_direct", json!(direct)).only_in(ClaimPlace::IdToken),
        );
        extra_claims
            .push(ExtraClaim::new(sub, "nickname", sub.into()).only_in(ClaimPlace::Userinfo));
    }
    IdpOptions {
        response_iss: ResponseIss::Omitted,
        extra_claims,
        ..IdpOptions::default()
    }
}

const GITLAB: &str = r#"
[providers.gitlab]
kind = "gitlab"
base_url = "{demo_idp}"
client_id = "portcullis-demo"
client_secret = "demo-secret"
"#;

#[tokio::test]
async fn gitlab_signs_in_with_groups_from_the_groups_claim() {
    let h = harness(gitlab(), GITLAB).await;
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "gitlab", Some("ada")).await;
    let app = upstream_view(&mut b, &h, &done).await;
    assert_identity(
        &app,
        "ada",
        Some("ada@example.com"),
        Some("admins,engineering"),
        "gitlab",
    );
}

#[tokio::test]
async fn gitlab_token_endpoint_error_fails_the_sign_in_cleanly() {
    let h = harness(gitlab(), GITLAB).await;
    h.idp.misbehave(Misbehaviour::TokenEndpointError);
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "gitlab", Some("ada")).await;
    assert_refused(&b, &done, "invalid_grant");
}
