//! Microsoft Entra ID v2: with tenant `common` the discovery issuer is the
//! template `<base>/{tenantid}/v2.0`, each id_token's `iss` names the user's
//! tenant and must match its `tid`; `allowed_tenants` restricts `tid`; groups
//! come from the `groups` claim; PKCE is sent though discovery does not list it;
//! no `iss` on the authorization response.

use portcullis::demo::idp::{
    DEFAULT_TENANT_ID, ExtraClaim, IdpOptions, Layout, Misbehaviour, ResponseIss,
};

use super::{assert_identity, assert_refused, harness, sign_in, upstream_view};
use crate::support::param;

/// Ada is in the default tenant, Grace in `tenant-b`.
fn microsoft() -> IdpOptions {
    IdpOptions {
        layout: Layout::MicrosoftTenants,
        response_iss: ResponseIss::Omitted,
        extra_claims: vec![ExtraClaim::new(
            "grace",
            "tid",
            "3f1c9a5e-0000-4000-8000-00000000000b".into(),
        )],
        ..IdpOptions::default()
    }
}

fn microsoft_toml(tenant: &str, extra: &str) -> String {
    format!(
        r#"
[providers.microsoft]
kind = "microsoft"
tenant = "{tenant}"
issuer = "{{demo_idp}}/{tenant}/v2.0"
client_id = "portcullis-demo"
client_secret = "demo-secret"
{extra}
"#
    )
}

#[tokio::test]
async fn microsoft_common_accepts_a_tenant_specific_issuer_and_forwards_groups() {
    let h = harness(microsoft(), &microsoft_toml("common", "")).await;
    for (user, groups) in [
        ("ada", Some("admins,engineering")),
        ("grace", Some("engineering")),
    ] {
        let mut b = h.browser();
        let (authorize, done) = sign_in(&mut b, &h, "microsoft", Some(user)).await;
        assert!(
            authorize.contains("/common/oauth2/v2.0/authorize?"),
            "{authorize}"
        );
        assert_eq!(
            param(&authorize, "code_challenge_method").as_deref(),
            Some("S256")
        );
        let app = upstream_view(&mut b, &h, &done).await;
        let email = format!("{user}@example.com");
        assert_identity(&app, user, Some(&email), groups, "microsoft");
    }
    let seen = h.idp.token_requests();
    assert!(seen.iter().all(|t| t.pkce_ok), "{seen:?}");
}

#[tokio::test]
async fn microsoft_organizations_works_the_same_way() {
    let h = harness(microsoft(), &microsoft_toml("organizations", "")).await;
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "microsoft", Some("grace")).await;
    upstream_view(&mut b, &h, &done).await;
}

#[tokio::test]
async fn microsoft_allowed_tenants_refuses_another_tenant() {
    let allowed = format!("allowed_tenants = [\"{DEFAULT_TENANT_ID}\"]");
    let h = harness(microsoft(), &microsoft_toml("common", &allowed)).await;
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "microsoft", Some("grace")).await;
    assert_refused(&b, &done, "tenant");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "microsoft", Some("ada")).await;
    upstream_view(&mut b, &h, &done).await;
}

#[tokio::test]
async fn microsoft_refuses_a_token_whose_issuer_names_another_tenant_than_its_tid() {
    let h = harness(microsoft(), &microsoft_toml("common", "")).await;
    for misbehaviour in [Misbehaviour::TenantMismatch, Misbehaviour::MissingTenant] {
        h.idp.misbehave(misbehaviour);
        let mut b = h.browser();
        let (_, done) = sign_in(&mut b, &h, "microsoft", Some("grace")).await;
        assert_refused(&b, &done, "sign-in");
    }
}

#[tokio::test]
async fn microsoft_iss_on_the_authorization_response_must_name_a_tenant_of_this_provider() {
    let idp = IdpOptions {
        response_iss: ResponseIss::Unadvertised,
        ..microsoft()
    };
    let h = harness(idp, &microsoft_toml("common", "")).await;
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "microsoft", Some("grace")).await;
    upstream_view(&mut b, &h, &done).await;

    let mut b = h.browser();
    let authorize = b.start_with(&h, "microsoft", "/").await;
    let callback = b.get(&format!("{authorize}&login_hint=grace")).await;
    let callback = callback.location().to_owned();
    let tenant_issuer = param(&callback, "iss").unwrap();
    assert!(tenant_issuer.ends_with("/3f1c9a5e-0000-4000-8000-00000000000b/v2.0"));
    let forged = callback.replace(
        &url::form_urlencoded::byte_serialize(tenant_issuer.as_bytes()).collect::<String>(),
        "https%3A%2F%2Fevil.example%2F3f1c9a5e-0000-4000-8000-00000000000b%2Fv2.0",
    );
    assert_ne!(forged, callback);
    let done = b.get(&forged).await;
    assert_refused(&b, &done, "sign-in");
}

#[tokio::test]
async fn microsoft_token_endpoint_error_fails_the_sign_in_cleanly() {
    let h = harness(microsoft(), &microsoft_toml("common", "")).await;
    h.idp.misbehave(Misbehaviour::TokenEndpointError);
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "microsoft", Some("ada")).await;
    assert_refused(&b, &done, "invalid_grant");
}
