//! Microsoft Entra ID v2: with tenant `common` the discovery issuer is the
//! template `<base>/{tenantid}/v2.0`, each id_token's `iss` names the user's
//! tenant and must match its `tid`; `allowed_tenants` restricts `tid`; groups
//! come from the `groups` claim; PKCE is sent though discovery does not list it;
//! no `iss` on the authorization response; no `email_verified` either, only the
//! optional `xms_edov` claim says the email is the user's.

use portcullis::demo::idp::{
    DEFAULT_TENANT_ID, ExtraClaim, IdpOptions, Layout, Misbehaviour, ResponseIss,
};

use http::StatusCode;
use serde_json::Value;

use super::{assert_identity, assert_refused, harness, sign_in, upstream_view};
use crate::support::{Harness, Setup, param};

/// Grace's tenant; Ada and Eve are in [`DEFAULT_TENANT_ID`].
const GRACE_TENANT_ID: &str = "3f1c9a5e-0000-4000-8000-00000000000b";

/// As Entra ID sends them: no token says `email_verified`; Ada's and Grace's carry
/// `xms_edov: true` (their tenant verified the email's domain), Eve's does not.
fn microsoft() -> IdpOptions {
    let mut extra_claims = vec![ExtraClaim::new("grace", "tid", GRACE_TENANT_ID.into())];
    for user in ["ada", "grace", "eve"] {
        extra_claims.push(ExtraClaim::new(user, "email_verified", Value::Null));
    }
    for user in ["ada", "grace"] {
        extra_claims.push(ExtraClaim::new(user, "xms_edov", true.into()));
    }
    IdpOptions {
        layout: Layout::MicrosoftTenants,
        response_iss: ResponseIss::Omitted,
        extra_claims,
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
    assert!(tenant_issuer.ends_with(&format!("/{GRACE_TENANT_ID}/v2.0")));
    let forged = callback.replace(
        &url::form_urlencoded::byte_serialize(tenant_issuer.as_bytes()).collect::<String>(),
        &format!("https%3A%2F%2Fevil.example%2F{GRACE_TENANT_ID}%2Fv2.0"),
    );
    assert_ne!(forged, callback);
    let done = b.get(&forged).await;
    assert_refused(&b, &done, "sign-in");
}

#[tokio::test]
async fn microsoft_iss_on_the_authorization_response_must_be_the_tokens_issuer() {
    let idp = IdpOptions {
        response_iss: ResponseIss::Unadvertised,
        ..microsoft()
    };
    let h = harness(idp, &microsoft_toml("common", "")).await;
    let mut b = h.browser();
    let authorize = b.start_with(&h, "microsoft", "/").await;
    let callback = b.get(&format!("{authorize}&login_hint=grace")).await;
    let callback = callback.location().to_owned();
    // This provider's host and another real tenant: a valid fill of the issuer
    // template, so only the comparison with the id_token's `iss` can refuse it.
    let base = h.idp.issuer().as_str().trim_end_matches('/').to_owned();
    let grace_issuer = format!("{base}/{GRACE_TENANT_ID}/v2.0");
    let other_tenant = format!("{base}/{DEFAULT_TENANT_ID}/v2.0");
    assert_eq!(param(&callback, "iss"), Some(grace_issuer.clone()));
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let forged = callback.replace(&encode(&grace_issuer), &encode(&other_tenant));
    assert_ne!(forged, callback);
    let done = b.get(&forged).await;
    assert_eq!(done.status, StatusCode::UNAUTHORIZED, "{}", done.text());
    assert_refused(&b, &done, "sign-in failed");
}

#[tokio::test]
async fn microsoft_email_counts_as_verified_only_with_xms_edov() {
    let h = harness(microsoft(), &microsoft_toml("common", "")).await;
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "microsoft", Some("ada")).await;
    upstream_view(&mut b, &h, &done).await;
    let info = b.get_json(&h.url("/oauth2/userinfo")).await;
    assert_eq!(info.json()["email_verified"], true, "{}", info.text());

    // No xms_edov: the email is an attribute a tenant admin may set to anything.
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "microsoft", Some("eve")).await;
    assert_eq!(done.status, StatusCode::FORBIDDEN, "{}", done.text());
    assert_refused(&b, &done, "not verified");
}

#[tokio::test]
async fn microsoft_email_without_xms_edov_is_unverified_when_verification_is_not_required() {
    let h = Harness::with(Setup {
        idp: microsoft(),
        providers_toml: Some(microsoft_toml("common", "")),
        extra_toml: "[access]\nrequire_email_verified = false\n".into(),
        ..Setup::default()
    })
    .await;
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "microsoft", Some("eve")).await;
    upstream_view(&mut b, &h, &done).await;
    let info = b.get_json(&h.url("/oauth2/userinfo")).await;
    assert_eq!(info.json()["email_verified"], false, "{}", info.text());
}

#[tokio::test]
async fn microsoft_email_verified_sent_by_the_provider_outranks_xms_edov() {
    let mut idp = microsoft();
    idp.extra_claims
        .push(ExtraClaim::new("grace", "email_verified", false.into()));
    let h = harness(idp, &microsoft_toml("common", "")).await;
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "microsoft", Some("grace")).await;
    assert_eq!(done.status, StatusCode::FORBIDDEN, "{}", done.text());
    assert_refused(&b, &done, "not verified");
}

#[tokio::test]
async fn microsoft_token_endpoint_error_fails_the_sign_in_cleanly() {
    let h = harness(microsoft(), &microsoft_toml("common", "")).await;
    h.idp.misbehave(Misbehaviour::TokenEndpointError);
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "microsoft", Some("ada")).await;
    assert_refused(&b, &done, "invalid_grant");
}

/// Ada in more than 200 groups: Entra leaves `groups` out of the id_token
/// and names a claim source instead (the groups overage).
fn overage() -> IdpOptions {
    let mut options = microsoft();
    options.extra_claims.extend([
        ExtraClaim::new("ada", "groups", Value::Null),
        ExtraClaim::new("ada", "_claim_names", serde_json::json!({"groups": "src1"}))
            .only_in(portcullis::demo::idp::ClaimPlace::IdToken),
        ExtraClaim::new(
            "ada",
            "_claim_sources",
            serde_json::json!({"src1": {"endpoint": "https://graph.windows.net/t/users/u/getMemberObjects"}}),
        )
        .only_in(portcullis::demo::idp::ClaimPlace::IdToken),
    ]);
    options
}

/// A Microsoft Graph answering `getMemberGroups` for a bearer token with
/// `status` (the group ids when 200).
async fn graph(status: StatusCode) -> crate::fakes::FakeServer {
    crate::fakes::FakeServer::start(move |req| {
        let asked = req.method == http::Method::POST
            && req.path == "/v1.0/me/getMemberGroups"
            && req.bearer().is_some()
            && serde_json::from_slice::<Value>(&req.body).ok()
                == Some(serde_json::json!({"securityEnabledOnly": false}));
        match (asked, status) {
            (false, _) => crate::fakes::json(StatusCode::BAD_REQUEST, serde_json::json!({})),
            (true, StatusCode::OK) => crate::fakes::json(
                StatusCode::OK,
                serde_json::json!({"value": ["0b1e-group-1", "0b1e-group-2"]}),
            ),
            (true, status) => crate::fakes::json(
                status,
                serde_json::json!({"error": {"code": "Authorization_RequestDenied"}}),
            ),
        }
    })
    .await
}

#[tokio::test]
async fn a_groups_overage_is_read_from_microsoft_graph() {
    let graph = graph(StatusCode::OK).await;
    let extra = format!("graph_base_url = {:?}", graph.base());
    let h = harness(overage(), &microsoft_toml("common", &extra)).await;
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "microsoft", Some("ada")).await;
    let app = upstream_view(&mut b, &h, &done).await;
    assert_identity(
        &app,
        "ada",
        Some("ada@example.com"),
        Some("0b1e-group-1,0b1e-group-2"),
        "microsoft",
    );
    assert_eq!(graph.requests_to("/v1.0/me/getMemberGroups").len(), 1);
    // Without an overage, Graph is not asked.
    let mut grace = h.browser();
    let (_, done) = sign_in(&mut grace, &h, "microsoft", Some("grace")).await;
    upstream_view(&mut grace, &h, &done).await;
    assert_eq!(graph.requests().len(), 1);
}

#[tokio::test]
async fn a_groups_overage_that_graph_refuses_fails_the_sign_in() {
    for status in [StatusCode::FORBIDDEN, StatusCode::SERVICE_UNAVAILABLE] {
        let graph = graph(status).await;
        let extra = format!("graph_base_url = {:?}", graph.base());
        let h = harness(overage(), &microsoft_toml("common", &extra)).await;
        let mut b = h.browser();
        let (_, done) = sign_in(&mut b, &h, "microsoft", Some("ada")).await;
        assert_refused(&b, &done, "GroupMember.Read.All");
        assert_eq!(graph.requests().len(), 1, "{status}");
    }
}
