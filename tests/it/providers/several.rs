//! Several providers at once: the sign-in page lists each, each keeps its own
//! callback path so a flow never completes on another provider's path (mix-up),
//! extra authorization parameters and scopes reach the provider, and a public
//! client signs in with PKCE alone.

use http::StatusCode;
use portcullis::demo::idp::{DemoIdp, ExtraClaim, IdpOptions, Layout, ResponseIss};

use super::oauth2::{inhouse, inhouse_toml};
use super::{RD, assert_refused, harness, scopes, sign_in, upstream_view};
use crate::fakes::github::{CLIENT_ID, CLIENT_SECRET, FakeGithub, octocat};
use crate::support::{Harness, param};

fn google_toml(extra: &str) -> String {
    format!(
        r#"
[providers.google]
kind = "google"
issuer = "{{demo_idp}}"
client_id = "portcullis-demo"
client_secret = "demo-secret"
{extra}
"#
    )
}

fn github_toml(fake: &FakeGithub) -> String {
    format!(
        r#"
[providers.github]
kind = "github"
base_url = "{base}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
"#,
        base = fake.base()
    )
}

async fn three_providers() -> (Harness, FakeGithub) {
    let github = FakeGithub::start(vec![octocat()]).await;
    let oauth2 = inhouse().await;
    let inhouse = inhouse_toml(&oauth2).replace(
        "display_name = \"In-house SSO\"",
        "display_name = \"In-house SSO\"\nicon = \"https://cdn.example/sso.svg\"",
    );
    let toml = [google_toml(""), github_toml(&github), inhouse].concat();
    let h = harness(IdpOptions::default(), &toml).await;
    // The in-house fake is only listed here, never signed in with.
    drop(oauth2);
    (h, github)
}

#[tokio::test]
async fn the_sign_in_page_lists_every_provider_by_display_name() {
    let (h, _github) = three_providers().await;
    let mut b = h.browser();
    let page = b.get(&h.url("/oauth2/sign_in?rd=%2Fx")).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    for (id, name) in [
        ("google", "Google"),
        ("github", "GitHub"),
        ("inhouse", "In-house SSO"),
    ] {
        assert!(html.contains(name), "{name} is listed: {html}");
        assert!(
            html.contains(&format!("/oauth2/start/{id}?rd=%2Fx")),
            "{id} has its start link: {html}"
        );
    }
    assert!(
        html.contains("https://cdn.example/sso.svg"),
        "the icon is shown: {html}"
    );
}

#[tokio::test]
async fn each_provider_signs_in_and_the_session_remembers_which() {
    let (h, github) = three_providers().await;
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "google", Some("ada")).await;
    let app = upstream_view(&mut b, &h, &done).await;
    assert_eq!(
        app.upstream_header("x-forwarded-provider").as_deref(),
        Some("google")
    );

    github.queue_user("octocat");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "github", None).await;
    let app = upstream_view(&mut b, &h, &done).await;
    assert_eq!(
        app.upstream_header("x-forwarded-provider").as_deref(),
        Some("github")
    );
    assert_eq!(
        app.upstream_header("x-forwarded-user").as_deref(),
        Some("583231")
    );
}

#[tokio::test]
async fn a_callback_on_another_providers_path_never_completes_the_flow() {
    let (h, github) = three_providers().await;

    // A GitHub flow's answer delivered to Google's callback path.
    github.queue_user("octocat");
    let mut b = h.browser();
    let authorize = b.start_with(&h, "github", RD).await;
    let callback = b.get(&authorize).await.location().to_owned();
    let query = callback.split_once('?').unwrap().1;
    let done = b
        .get(&h.url(&format!("/oauth2/callback/google?{query}")))
        .await;
    assert_refused(&b, &done, "different provider");
    assert!(
        github
            .server
            .requests_to("/login/oauth/access_token")
            .is_empty()
    );

    // A Google flow's answer delivered to GitHub's.
    let mut b = h.browser();
    let authorize = b.start_with(&h, "google", RD).await;
    let callback = b
        .get(&format!("{authorize}&login_hint=ada"))
        .await
        .location()
        .to_owned();
    let query = callback.split_once('?').unwrap().1;
    let done = b
        .get(&h.url(&format!("/oauth2/callback/github?{query}")))
        .await;
    assert_refused(&b, &done, "different provider");
    assert!(
        h.idp.token_requests().is_empty(),
        "the code was never redeemed"
    );
}

#[tokio::test]
async fn extra_authorization_parameters_and_scopes_reach_each_provider() {
    let microsoft = DemoIdp::start(IdpOptions {
        layout: Layout::MicrosoftTenants,
        response_iss: ResponseIss::Omitted,
        ..IdpOptions::default()
    })
    .await
    .unwrap();
    let google = google_toml(
        r#"extra_scopes = ["groups"]
[providers.google.auth_params]
prompt = "select_account"
login_hint = "ada"
acr_values = "urn:example:loa:2"
access_type = "online""#,
    );
    let microsoft_toml = format!(
        r#"
[providers.microsoft]
kind = "microsoft"
issuer = "http://{addr}/common/v2.0"
client_id = "portcullis-demo"
client_secret = "demo-secret"
auth_params = {{ domain_hint = "example.com", login_hint = "grace" }}
"#,
        addr = microsoft.addr()
    );
    let h = harness(IdpOptions::default(), &[google, microsoft_toml].concat()).await;

    let mut b = h.browser();
    let (authorize, done) = sign_in(&mut b, &h, "google", None).await;
    for (name, value) in [
        ("prompt", "select_account"),
        ("login_hint", "ada"),
        ("acr_values", "urn:example:loa:2"),
        ("access_type", "online"),
    ] {
        assert_eq!(
            param(&authorize, name).as_deref(),
            Some(value),
            "{authorize}"
        );
    }
    let asked = scopes(&authorize);
    for scope in ["openid", "email", "profile", "groups"] {
        assert!(asked.contains(&scope.to_owned()), "{scope} in {asked:?}");
    }
    let app = upstream_view(&mut b, &h, &done).await;
    assert_eq!(
        app.upstream_header("x-forwarded-user").as_deref(),
        Some("ada")
    );

    let mut b = h.browser();
    let (authorize, done) = sign_in(&mut b, &h, "microsoft", None).await;
    assert_eq!(
        param(&authorize, "domain_hint").as_deref(),
        Some("example.com")
    );
    let app = upstream_view(&mut b, &h, &done).await;
    assert_eq!(
        app.upstream_header("x-forwarded-user").as_deref(),
        Some("grace")
    );
    assert_eq!(
        app.upstream_header("x-forwarded-provider").as_deref(),
        Some("microsoft")
    );
}

#[tokio::test]
async fn a_public_client_signs_in_to_an_oidc_preset_with_pkce_alone() {
    let idp = IdpOptions {
        client_secret: None,
        extra_claims: vec![ExtraClaim::new("grace", "hd", "example.com".into())],
        ..IdpOptions::default()
    };
    let toml = r#"
[providers.google]
kind = "google"
issuer = "{demo_idp}"
client_id = "portcullis-demo"
hosted_domain = "example.com"
"#;
    let h = harness(idp, toml).await;
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "google", Some("grace")).await;
    upstream_view(&mut b, &h, &done).await;
    let seen = h.idp.token_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].client_auth, "none");
    assert!(seen[0].had_code_verifier && seen[0].pkce_ok);
}

#[test]
fn github_and_facebook_cannot_be_public_clients() {
    for kind in ["github", "facebook"] {
        let toml = format!(
            r#"
[server]
public_url = "https://auth.example"
[upstream]
url = "http://127.0.0.1:9"
[session]
secret = "{secret}"
[providers.social]
kind = "{kind}"
client_id = "id"
"#,
            secret = crate::support::SECRET
        );
        let error = portcullis::config::from_figment(figment::Figment::from(
            <figment::providers::Toml as figment::providers::Format>::string(&toml),
        ))
        .expect_err("a public client is refused")
        .to_string();
        assert!(error.contains("client_secret"), "{kind}: {error}");
    }
}
