//! `kind = "oauth2"`: any OAuth 2.0 server, here one whose userinfo nests its
//! claims and uses a numeric id, mapped with `[providers.<id>.claims]` dotted paths.

use http::StatusCode;

use super::{assert_identity, assert_refused, harness, scopes, sign_in, upstream_view};
use crate::fakes::oauth2::{CLIENT_ID, CLIENT_SECRET, FakeOauth2, nested_user};
use portcullis::demo::idp::IdpOptions;

pub(super) fn inhouse_toml(fake: &FakeOauth2) -> String {
    let base = fake.base();
    format!(
        r#"
[providers.inhouse]
kind = "oauth2"
display_name = "In-house SSO"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
auth_url = "{base}/oauth/authorize"
token_url = "{base}/oauth/token"
userinfo_url = "{base}/api/me"
scopes = ["profile", "email"]
[providers.inhouse.claims]
sub = "data.id"
email = "data.attributes.email"
email_verified = "data.attributes.verified"
name = "data.attributes.full_name"
preferred_username = "data.attributes.login"
picture = "data.attributes.avatar.url"
groups = "data.roles"
"#
    )
}

pub(super) async fn inhouse() -> FakeOauth2 {
    FakeOauth2::start(vec![nested_user(
        12345,
        "jdoe",
        "jdoe@corp.example",
        &["a", "b"],
    )])
    .await
}

#[tokio::test]
async fn oauth2_maps_nested_claims_and_a_numeric_id() {
    let fake = inhouse().await;
    let h = harness(IdpOptions::default(), &inhouse_toml(&fake)).await;
    fake.queue_user("jdoe");
    let mut b = h.browser();
    let (authorize, done) = sign_in(&mut b, &h, "inhouse", None).await;
    assert_eq!(scopes(&authorize), ["profile", "email"]);
    let app = upstream_view(&mut b, &h, &done).await;
    assert_identity(
        &app,
        "12345",
        Some("jdoe@corp.example"),
        Some("a,b"),
        "inhouse",
    );
    assert_eq!(
        app.upstream_header("x-forwarded-preferred-username")
            .as_deref(),
        Some("jdoe")
    );
    assert_eq!(
        app.upstream_header("x-forwarded-name").as_deref(),
        Some("jdoe example")
    );
    let info = b.get_json(&h.url("/oauth2/userinfo")).await;
    assert_eq!(info.json()["email_verified"], true);
}

#[tokio::test]
async fn oauth2_refused_code_fails_the_sign_in_cleanly() {
    let fake = inhouse().await;
    let h = harness(IdpOptions::default(), &inhouse_toml(&fake)).await;
    fake.refuse_token();
    fake.queue_user("jdoe");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "inhouse", None).await;
    assert_refused(&b, &done, "invalid_grant");
}

#[tokio::test]
async fn oauth2_userinfo_failure_is_a_bad_gateway_not_a_crash() {
    let fake = inhouse().await;
    let h = harness(IdpOptions::default(), &inhouse_toml(&fake)).await;
    fake.fail_userinfo(StatusCode::INTERNAL_SERVER_ERROR);
    fake.queue_user("jdoe");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "inhouse", None).await;
    assert_eq!(done.status, StatusCode::BAD_GATEWAY, "{}", done.text());
    assert_refused(&b, &done, "identity provider");
}

#[tokio::test]
async fn oauth2_emails_url_supplies_a_missing_email() {
    let mut user = nested_user(777, "nomail", "listed@corp.example", &[]);
    user.userinfo["data"]["attributes"]
        .as_object_mut()
        .map(|a| a.remove("email"));
    let fake = FakeOauth2::start(vec![user]).await;
    let toml = inhouse_toml(&fake).replace(
        "scopes = [",
        &format!("emails_url = \"{}/api/emails\"\nscopes = [", fake.base()),
    );
    let h = harness(IdpOptions::default(), &toml).await;
    fake.queue_user("nomail");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "inhouse", None).await;
    let app = upstream_view(&mut b, &h, &done).await;
    assert_identity(&app, "777", Some("listed@corp.example"), None, "inhouse");
    assert_eq!(fake.server.requests_to("/api/emails").len(), 1);
}
