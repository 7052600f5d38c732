//! Sign-in through each provider preset, end to end through portcullis, against
//! a provider that answers in that provider's real wire format: the demo identity
//! provider dressed as Google, Microsoft, GitLab or LinkedIn, and the fakes for
//! GitHub, Facebook and a generic OAuth 2.0 server. Each preset also fails a
//! sign-in cleanly when its provider answers an error.

mod facebook;
mod github;
mod gitlab;
mod google;
mod linkedin;
mod microsoft;
mod oauth2;
mod several;

use http::StatusCode;
use portcullis::demo::idp::IdpOptions;

use crate::support::{Browser, Harness, Resp, Setup};

/// A harness whose providers are exactly `providers_toml` (see [`Setup::providers_toml`]),
/// with the demo identity provider started from `idp`.
async fn harness(idp: IdpOptions, providers_toml: &str) -> Harness {
    Harness::with(Setup {
        idp,
        providers_toml: Some(providers_toml.to_owned()),
        ..Setup::default()
    })
    .await
}

/// The redirect target every test asks to come back to.
const RD: &str = "/app?x=1";

/// Starts a sign-in with `provider` and lets the provider approve: the demo identity
/// provider at once for `login_hint` (when given), a fake for its queued user.
/// Returns the authorization URL portcullis sent the browser to, and the callback's answer.
async fn sign_in(
    b: &mut Browser,
    h: &Harness,
    provider: &str,
    login_hint: Option<&str>,
) -> (String, Resp) {
    let authorize = b.start_with(h, provider, RD).await;
    let url = match login_hint {
        Some(sub) => format!("{authorize}&login_hint={sub}"),
        None => authorize.clone(),
    };
    let approved = b.get(&url).await;
    assert_eq!(
        approved.status,
        StatusCode::FOUND,
        "the provider should send the browser back: {}",
        approved.text()
    );
    let callback = approved.location().to_owned();
    assert!(
        callback.starts_with(&h.url(&format!("/oauth2/callback/{provider}?"))),
        "each provider has its own callback path: {callback}"
    );
    let done = b.get(&callback).await;
    (authorize, done)
}

/// The sign-in ended in a session and a redirect to [`RD`]; returns what the
/// echo upstream saw on the next request.
async fn upstream_view(b: &mut Browser, h: &Harness, done: &Resp) -> Resp {
    assert_eq!(
        done.status,
        StatusCode::FOUND,
        "sign-in failed: {}",
        done.text()
    );
    assert_eq!(done.location(), RD);
    assert!(!b.session_cookies().is_empty());
    let app = b.get_json(&h.url(RD)).await;
    assert_eq!(app.status, StatusCode::OK, "{}", app.text());
    app
}

/// The identity headers the upstream saw: user, email, groups, provider.
fn assert_identity(
    app: &Resp,
    user: &str,
    email: Option<&str>,
    groups: Option<&str>,
    provider: &str,
) {
    assert_eq!(
        app.upstream_header("x-forwarded-user").as_deref(),
        Some(user)
    );
    assert_eq!(app.upstream_header("x-forwarded-email").as_deref(), email);
    assert_eq!(app.upstream_header("x-forwarded-groups").as_deref(), groups);
    assert_eq!(
        app.upstream_header("x-forwarded-provider").as_deref(),
        Some(provider)
    );
}

/// A refused sign-in: a clear 4xx or 502 page (never a 500), no session minted,
/// and the page says `why`.
fn assert_refused(b: &Browser, done: &Resp, why: &str) {
    assert!(
        done.status.is_client_error() || done.status == StatusCode::BAD_GATEWAY,
        "expected a 4xx or 502, got {}: {}",
        done.status,
        done.text()
    );
    assert!(
        b.session_cookies().is_empty(),
        "no session after a failed sign-in: {:?}",
        b.cookies
    );
    assert!(
        done.text().to_lowercase().contains(&why.to_lowercase()),
        "the page should say {why:?}: {}",
        done.text()
    );
}

/// The scopes of an authorization URL (space-separated, RFC 6749 §3.3; GitHub and
/// Facebook also take commas).
fn scopes(authorize: &str) -> Vec<String> {
    crate::support::param(authorize, "scope")
        .unwrap_or_default()
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}
