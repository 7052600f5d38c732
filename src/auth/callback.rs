//! `GET /oauth2/callback/{provider}`: the provider sends the browser back here.
//! Checks the flow, exchanges the code, verifies the identity, asks the login
//! hook (when set), applies the policy, and only then mints a new session.

use http::header::SET_COOKIE;
use http::{Request, Response, StatusCode};

use super::query_param;
use super::sign_in::unknown_provider;
use crate::authn::kept_tokens;
use crate::headers::client_ip;
use crate::identity::Identity;
use crate::login_hook::{HookCall, HookEvent, Judged};
use crate::metrics::SignInResult;
use crate::provider::ProviderError;
use crate::provider::{Callback, FlowSecrets, clip};
use crate::respond::with_cookies;
use crate::respond::{self, Problem, Source};
use crate::server::ConnInfo;
use crate::session::store::SaveError;
use crate::session::{Session, new_session_id};
use crate::{App, Body, RequestContext, now_unix};

pub async fn callback<'a, B>(
    app: &'a App,
    req: &Request<B>,
    conn: &ConnInfo,
    provider_id: &str,
    ctx: &mut RequestContext<'a>,
) -> Response<Body> {
    let html = respond::wants_html(req.method(), req.headers());
    // Not counted: the path names it, and only configured providers are labels.
    let Some(provider) = app.providers.get(provider_id) else {
        return respond::problem(unknown_provider(), html);
    };
    let mut ended = |result| ctx.sign_in = Some((provider.id(), result));
    // Counted as a failure until it succeeds.
    ended(SignInResult::invalid_callback);
    let Some(state) = query_param(req, "state") else {
        return respond::problem(
            bad_callback("The sign-in answer has no state parameter."),
            html,
        );
    };
    let now = now_unix();
    let (flow, clear_flow) = app.sessions.cookies.take_flow(req.headers(), &state, now);
    let fail =
        |problem: Problem| with_cookies(respond::problem(problem, html), vec![clear_flow.clone()]);
    let flow = match flow {
        Ok(flow) => flow,
        Err(e) => return fail(Problem::from(e)),
    };
    // A flow started for one provider never completes on another's path (mix-up).
    if flow.provider != provider.id() {
        return fail(bad_callback(
            "This sign-in was started with a different provider.",
        ));
    }
    if let Some(error) = query_param(req, "error") {
        ended(SignInResult::provider_refused);
        // Said by the provider, but carried by the browser: bounded, one line.
        let description = query_param(req, "error_description").unwrap_or_default();
        return fail(Problem {
            status: StatusCode::FORBIDDEN,
            code: "provider_error",
            title: "The identity provider refused the sign-in",
            detail: format!("{}: {}", clip(&error), clip(&description)),
            source: Source::Provider,
        });
    }
    let Some(code) = query_param(req, "code") else {
        return fail(bad_callback("The sign-in answer has no code parameter."));
    };
    let iss = query_param(req, "iss");
    let secrets = FlowSecrets {
        state: flow.state,
        nonce: flow.nonce,
        pkce_verifier: flow.pkce_verifier,
    };
    let redirect_uri = app.config.redirect_uri(provider.id());
    let signed_in = match provider
        .finish(
            Callback {
                code: &code,
                iss: iss.as_deref(),
            },
            &secrets,
            &redirect_uri,
        )
        .await
    {
        Ok(s) => s,
        Err(e) => {
            ended(match e {
                ProviderError::TokenRejected { .. } => SignInResult::provider_refused,
                ProviderError::NotPermitted(_) => SignInResult::denied,
                _ => SignInResult::provider_error,
            });
            tracing::warn!(target: crate::log::AUDIT, provider = provider.id(), error = %e, "sign-in failed");
            return fail(Problem::from(e));
        }
    };
    let wanted = app.routes.wanted_claims();
    let mut identity = match Identity::from_claims(&signed_in.claims, wanted) {
        Ok(i) => i,
        Err(e) => {
            ended(SignInResult::provider_error);
            return fail(Problem::from(e));
        }
    };
    // Before the policy, so that a group the hook adds can satisfy it.
    if let Some(hook) = &app.login_hook {
        let call = HookCall {
            event: HookEvent::SignIn,
            provider: provider.id(),
            identity: &identity,
            claims: &signed_in.claims,
            ip: Some(client_ip(
                req.headers(),
                conn.peer_ip.ip(),
                &app.config.server.trusted_proxies,
            )),
            headers: req.headers(),
        };
        match hook.judge(&call, &app.metrics).await {
            Judged::Admit(added) => identity = identity.with_added(added),
            Judged::Unanswered => {}
            Judged::Denied(problem) => {
                ended(SignInResult::denied);
                return fail(problem);
            }
            Judged::Failed(problem) => {
                ended(SignInResult::hook_error);
                return fail(problem);
            }
        }
    }
    if let Err(denied) = app.routes.policy().admits(&identity) {
        ended(SignInResult::denied);
        tracing::info!(target: crate::log::AUDIT, provider = provider.id(), sub = identity.sub.as_str(), reason = %denied, "sign-in refused by policy");
        return fail(Problem::from(denied));
    }
    let sid = signed_in
        .claims
        .get("sid")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let session = Session {
        id: new_session_id(),
        provider: provider.id().to_owned(),
        identity,
        tokens: kept_tokens(app, provider, signed_in.tokens),
        created_at: now,
        expires_at: now + app.config.session.lifetime.as_secs(),
        last_seen_at: now,
        sid,
        refreshed_at: now,
    };
    let sub = session.identity.sub.clone();
    let saved = app.sessions.save(session, req.headers()).await;
    ended(match saved {
        Ok(_) => SignInResult::signed_in,
        Err(_) => SignInResult::store_error,
    });
    let cookies = match saved {
        Ok((_, cookies)) => cookies,
        Err(SaveError::TooLarge(too_large)) => {
            return fail(Problem::provider(too_large.to_string()));
        }
        Err(SaveError::Unavailable(unavailable)) => return fail(Problem::from(unavailable)),
    };
    tracing::info!(target: crate::log::AUDIT, provider = provider.id(), sub = sub.as_str(), "signed in");
    let mut resp = respond::redirect(&super::safe_rd(app, Some(&flow.rd)));
    let headers = resp.headers_mut();
    headers.append(SET_COOKIE, clear_flow);
    for cookie in cookies {
        headers.append(SET_COOKIE, cookie);
    }
    resp
}

fn bad_callback(detail: &str) -> Problem {
    Problem {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_callback",
        title: "Sign-in could not be completed",
        detail: detail.into(),
        source: Source::Client,
    }
}
