//! Facebook Login: versioned dialog and token endpoints, client credentials as
//! parameters, JSON answers, `/me?fields=id,name,email,picture`, and Graph
//! error objects turned into clear sign-in errors.

use super::{assert_identity, assert_refused, harness, sign_in, upstream_view};
use crate::fakes::facebook::{CLIENT_ID, CLIENT_SECRET, FakeFacebook, GraphError, mark};
use crate::fakes::find;
use portcullis::demo::idp::IdpOptions;

fn facebook_toml(fake: &FakeFacebook) -> String {
    facebook_toml_with_me(fake, "/me?fields=id,name,email,picture")
}

/// `me` is the `userinfo_url` override, after the versioned base.
fn facebook_toml_with_me(fake: &FakeFacebook, me: &str) -> String {
    let v = fake.versioned();
    format!(
        r#"
[providers.facebook]
kind = "facebook"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
auth_url = "{v}/dialog/oauth"
token_url = "{v}/oauth/access_token"
userinfo_url = "{v}{me}"
"#
    )
}

#[tokio::test]
async fn facebook_signs_in_with_the_graph_profile() {
    let fake = FakeFacebook::start(vec![mark()]).await;
    let h = harness(IdpOptions::default(), &facebook_toml(&fake)).await;
    fake.queue_user("10158123456789012");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "facebook", None).await;
    let app = upstream_view(&mut b, &h, &done).await;
    assert_identity(
        &app,
        "10158123456789012",
        Some("mark@fb.example"),
        None,
        "facebook",
    );
    assert_eq!(
        app.upstream_header("x-forwarded-name").as_deref(),
        Some("Mark Example")
    );
    let token = &fake.server.requests_to("/oauth/access_token")[0];
    assert_eq!(find(&token.params(), "client_secret"), Some(CLIENT_SECRET));
    let me = &fake.server.requests_to("/me")[0];
    assert!(
        me.query_param("fields")
            .is_some_and(|f| f.contains("email"))
    );
    let info = b.get_json(&h.url("/oauth2/userinfo")).await;
    assert_eq!(info.json()["email_verified"], true);
}

#[tokio::test]
async fn a_userinfo_override_without_fields_still_gets_the_email() {
    let fake = FakeFacebook::start(vec![mark()]).await;
    let h = harness(
        IdpOptions::default(),
        &facebook_toml_with_me(&fake, "/me?locale=en_GB"),
    )
    .await;
    fake.queue_user("10158123456789012");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "facebook", None).await;
    let app = upstream_view(&mut b, &h, &done).await;
    assert_identity(
        &app,
        "10158123456789012",
        Some("mark@fb.example"),
        None,
        "facebook",
    );
    let me = &fake.server.requests_to("/me")[0];
    assert_eq!(me.query_param("locale"), Some("en_GB"));
}

#[tokio::test]
async fn facebook_graph_error_on_me_is_a_clear_escaped_sign_in_error() {
    let fake = FakeFacebook::start(vec![mark()]).await;
    let h = harness(IdpOptions::default(), &facebook_toml(&fake)).await;
    fake.fail_me(GraphError::invalid_token());
    fake.queue_user("10158123456789012");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "facebook", None).await;
    assert_refused(&b, &done, "Invalid OAuth access token.");

    fake.fail_me(GraphError {
        message: "Error validating access token: Session has expired on <Tuesday>.".into(),
        kind: "OAuthException".into(),
        code: 190,
    });
    fake.queue_user("10158123456789012");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "facebook", None).await;
    assert_refused(&b, &done, "Session has expired on &lt;Tuesday&gt;");
    assert!(!done.text().contains("<Tuesday>"));
}

#[tokio::test]
async fn facebook_token_endpoint_error_and_denial_fail_the_sign_in() {
    let fake = FakeFacebook::start(vec![mark()]).await;
    let h = harness(IdpOptions::default(), &facebook_toml(&fake)).await;
    fake.fail_token(GraphError {
        message: "This authorization code has expired.".into(),
        kind: "OAuthException".into(),
        code: 100,
    });
    fake.queue_user("10158123456789012");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "facebook", None).await;
    assert_refused(&b, &done, "This authorization code has expired.");

    fake.deny_next();
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "facebook", None).await;
    assert_refused(&b, &done, "access_denied");
}
