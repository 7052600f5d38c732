//! GitHub (OAuth 2.0, not OIDC): the token endpoint's form-encoded answer, the
//! email from /user/emails when /user has none, organization and team
//! restriction with groups `org` and `org/team`, GitHub Enterprise's `/api/v3`
//! layout, and GitHub's ways of failing.

use http::StatusCode;

use super::{assert_identity, assert_refused, harness, scopes, sign_in, upstream_view};
use crate::fakes::github::{CLIENT_ID, CLIENT_SECRET, FakeGithub, TokenFormat, hubot, octocat};
use crate::support::param;
use portcullis::demo::idp::IdpOptions;

/// github.com's layout, every URL overridden to point at the fake.
fn github_toml(fake: &FakeGithub, extra: &str) -> String {
    let base = fake.base();
    format!(
        r#"
[providers.github]
kind = "github"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
auth_url = "{base}/login/oauth/authorize"
token_url = "{base}/login/oauth/access_token"
userinfo_url = "{base}/user"
emails_url = "{base}/user/emails"
{extra}
"#
    )
}

/// GitHub Enterprise: everything derives from `base_url` (API under `/api/v3`).
fn enterprise_toml(fake: &FakeGithub, extra: &str) -> String {
    format!(
        r#"
[providers.github]
kind = "github"
base_url = "{base}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
{extra}
"#,
        base = fake.base()
    )
}

#[tokio::test]
async fn github_signs_in_with_a_form_encoded_token_answer() {
    let fake = FakeGithub::start(vec![octocat()]).await;
    fake.token_format(TokenFormat::FormEncoded);
    let h = harness(IdpOptions::default(), &github_toml(&fake, "")).await;
    fake.queue_user("octocat");
    let mut b = h.browser();
    let (authorize, done) = sign_in(&mut b, &h, "github", None).await;
    let mut asked = scopes(&authorize);
    asked.sort();
    assert_eq!(asked, ["read:user", "user:email"]);
    assert_eq!(
        param(&authorize, "redirect_uri"),
        Some(h.url("/oauth2/callback/github"))
    );
    assert!(
        param(&authorize, "nonce").is_none(),
        "no id_token, no nonce"
    );
    let app = upstream_view(&mut b, &h, &done).await;
    assert_identity(&app, "583231", Some("octocat@github.com"), None, "github");
    assert_eq!(
        app.upstream_header("x-forwarded-preferred-username")
            .as_deref(),
        Some("octocat")
    );
    assert_eq!(
        app.upstream_header("x-forwarded-name").as_deref(),
        Some("The Octocat")
    );

    let token = &fake.server.requests_to("/login/oauth/access_token")[0];
    let params = token.params();
    assert!(
        crate::fakes::find(&params, "code_verifier").is_some(),
        "PKCE verifier sent"
    );
    for api in fake.server.requests_to("/user") {
        assert!(api.header("user-agent").is_some());
        assert!(api.bearer().is_some());
    }
}

#[tokio::test]
async fn github_takes_the_primary_verified_email_from_user_emails_when_user_has_none() {
    let fake = FakeGithub::start(vec![hubot()]).await;
    let h = harness(IdpOptions::default(), &github_toml(&fake, "")).await;
    fake.queue_user("hubot");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "github", None).await;
    let app = upstream_view(&mut b, &h, &done).await;
    assert_identity(&app, "4242", Some("hubot@users.example"), None, "github");
    assert_eq!(fake.server.requests_to("/user/emails").len(), 1);
    let token = &fake.server.requests_to("/login/oauth/access_token")[0];
    assert!(
        token
            .header("accept")
            .is_some_and(|a| a.contains("application/json")),
        "the JSON answer was asked for"
    );
    let info = b.get_json(&h.url("/oauth2/userinfo")).await;
    assert_eq!(info.json()["email_verified"], true);
}

#[tokio::test]
async fn github_enterprise_restricts_to_organizations_and_teams_and_forwards_them_as_groups() {
    let fake = FakeGithub::start(vec![octocat(), hubot()]).await;
    let toml = enterprise_toml(
        &fake,
        r#"organizations = ["acme"]
teams = ["acme/platform"]"#,
    );
    let h = harness(IdpOptions::default(), &toml).await;

    fake.queue_user("octocat");
    let mut b = h.browser();
    let (authorize, done) = sign_in(&mut b, &h, "github", None).await;
    assert!(
        authorize.starts_with(&format!("{}/login/oauth/authorize?", fake.base())),
        "{authorize}"
    );
    assert!(
        scopes(&authorize).contains(&"read:org".to_owned()),
        "{authorize}"
    );
    let app = upstream_view(&mut b, &h, &done).await;
    let groups = app
        .upstream_header("x-forwarded-groups")
        .unwrap_or_default();
    let mut groups: Vec<&str> = groups.split(',').collect();
    groups.sort();
    assert_eq!(groups, ["acme", "acme/platform", "other-org"]);
    assert!(
        !fake.server.requests_to("/api/v3/user").is_empty(),
        "Enterprise API under /api/v3"
    );

    fake.queue_user("hubot");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "github", None).await;
    assert_eq!(done.status, StatusCode::FORBIDDEN, "{}", done.text());
    assert_refused(&b, &done, "organization");
}

#[tokio::test]
async fn github_team_membership_alone_is_enough() {
    let fake = FakeGithub::start(vec![octocat()]).await;
    let toml = enterprise_toml(&fake, r#"teams = ["acme/platform"]"#);
    let h = harness(IdpOptions::default(), &toml).await;
    fake.queue_user("octocat");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "github", None).await;
    upstream_view(&mut b, &h, &done).await;
}

#[tokio::test]
async fn github_bad_verification_code_with_http_200_fails_the_sign_in() {
    let fake = FakeGithub::start(vec![octocat()]).await;
    let h = harness(IdpOptions::default(), &github_toml(&fake, "")).await;
    for format in [TokenFormat::FormEncoded, TokenFormat::Negotiated] {
        fake.token_format(format);
        fake.fail_token_exchange();
        fake.queue_user("octocat");
        let mut b = h.browser();
        let (_, done) = sign_in(&mut b, &h, "github", None).await;
        assert_refused(&b, &done, "bad_verification_code");
    }
    assert!(fake.server.requests_to("/user").is_empty());
}

#[tokio::test]
async fn github_api_errors_and_a_denied_authorization_fail_the_sign_in() {
    let fake = FakeGithub::start(vec![octocat()]).await;
    let h = harness(IdpOptions::default(), &github_toml(&fake, "")).await;
    fake.deny_next();
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "github", None).await;
    assert_refused(&b, &done, "access_denied");

    fake.fail_api();
    fake.queue_user("octocat");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "github", None).await;
    assert_refused(&b, &done, "sign-in");
}

/// `[providers.<id>.claims]` works for GitHub too: paths into the claims
/// portcullis built from GitHub's API.
#[tokio::test]
async fn github_claims_paths_remap_the_built_claims() {
    let fake = FakeGithub::start(vec![octocat()]).await;
    let toml = github_toml(
        &fake,
        "[providers.github.claims]\nname = \"preferred_username\"\ngroups = \"preferred_username\"",
    );
    let h = harness(IdpOptions::default(), &toml).await;
    fake.queue_user("octocat");
    let mut b = h.browser();
    let (_, done) = sign_in(&mut b, &h, "github", None).await;
    let app = upstream_view(&mut b, &h, &done).await;
    assert_identity(
        &app,
        "583231",
        Some("octocat@github.com"),
        Some("octocat"),
        "github",
    );
    assert_eq!(
        app.upstream_header("x-forwarded-name").as_deref(),
        Some("octocat")
    );
}
