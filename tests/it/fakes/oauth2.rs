//! A plain OAuth 2.0 server (RFC 6749) whose userinfo nests its claims, as many
//! in-house APIs do: `{"data": {"id": 12345, "attributes": {..}, "roles": [..]}}`.
//! `/oauth/authorize`, `/oauth/token` (JSON answers, RFC 6749 §5.2 errors),
//! `/api/me` and a GitHub-style `/api/emails` list.

use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{
    Authorized, CodeFlow, FakeServer, Recorded, Reply, TokenProblem, json, lock, redirect, text,
};

pub const CLIENT_ID: &str = "inhouse-client";
pub const CLIENT_SECRET: &str = "inhouse-secret";

pub struct OauthUser {
    pub login: String,
    /// What `/api/me` answers.
    pub userinfo: Value,
    /// What `/api/emails` answers: `[{email, primary, verified}]`.
    pub emails: Value,
}

/// Userinfo as the in-house API nests it (the numeric `id` is the subject), and
/// the email as the one primary, verified entry of the emails list.
pub fn nested_user(id: u64, login: &str, email: &str, roles: &[&str]) -> OauthUser {
    let userinfo = json!({
        "data": {
            "id": id,
            "type": "user",
            "attributes": {
                "login": login,
                "email": email,
                "verified": true,
                "full_name": format!("{login} example"),
                "avatar": {"url": format!("https://cdn.example/{login}.png")},
            },
            "roles": roles,
        },
        "meta": {"api_version": "3"},
    });
    OauthUser {
        login: login.into(),
        userinfo,
        emails: json!([{"email": email, "primary": true, "verified": true}]),
    }
}

struct State {
    flow: CodeFlow,
    users: Vec<OauthUser>,
    /// `/oauth/token` answers `invalid_grant`.
    refuse_token: Mutex<bool>,
    /// `/api/me` answers this status with an error body.
    userinfo_status: Mutex<Option<StatusCode>>,
}

pub struct FakeOauth2 {
    pub server: FakeServer,
    state: Arc<State>,
}

impl FakeOauth2 {
    pub async fn start(users: Vec<OauthUser>) -> Self {
        let state = Arc::new(State {
            flow: CodeFlow::new(CLIENT_ID, CLIENT_SECRET),
            users,
            refuse_token: Mutex::new(false),
            userinfo_status: Mutex::new(None),
        });
        let handler_state = state.clone();
        let server = FakeServer::start(move |req| route(&handler_state, req)).await;
        FakeOauth2 { server, state }
    }

    pub fn base(&self) -> String {
        self.server.base()
    }

    pub fn queue_user(&self, login: &str) {
        self.state.flow.queue_user(login);
    }

    pub fn refuse_token(&self) {
        *lock(&self.state.refuse_token) = true;
    }

    pub fn fail_userinfo(&self, status: StatusCode) {
        *lock(&self.state.userinfo_status) = Some(status);
    }
}

fn route(state: &State, req: &Recorded) -> Reply {
    match (&req.method, req.path.as_str()) {
        (&Method::GET, "/oauth/authorize") => authorize(state, req),
        (&Method::POST, "/oauth/token") => token(state, req),
        (&Method::GET, "/api/me") => userinfo(state, req, |user| &user.userinfo),
        (&Method::GET, "/api/emails") => userinfo(state, req, |user| &user.emails),
        _ => json(StatusCode::NOT_FOUND, json!({"error": "not_found"})),
    }
}

fn authorize(state: &State, req: &Recorded) -> Reply {
    if req.query_param("response_type") != Some("code") {
        return text(StatusCode::BAD_REQUEST, "response_type must be code");
    }
    let denied = [
        ("error", "access_denied"),
        (
            "error_description",
            "The resource owner denied the request.",
        ),
    ];
    match state.flow.authorize(&req.query, &denied) {
        Authorized::Redirect(target) => redirect(&target),
        Authorized::Refused(problem) => text(StatusCode::BAD_REQUEST, &problem),
    }
}

fn token(state: &State, req: &Recorded) -> Reply {
    let oauth_error = |status: StatusCode, error: &str, description: &str| {
        json(
            status,
            json!({"error": error, "error_description": description}),
        )
    };
    if *lock(&state.refuse_token) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The provided authorization grant is invalid, expired or revoked.",
        );
    }
    let params = req.params();
    if super::find(&params, "grant_type") != Some("authorization_code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "use authorization_code",
        );
    }
    match state.flow.redeem(req, &params) {
        Ok((_, token, grant)) => json(
            StatusCode::OK,
            json!({"access_token": token, "token_type": "Bearer", "expires_in": 7200, "scope": grant.scope}),
        ),
        Err(TokenProblem::InvalidClient) => oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed.",
        ),
        Err(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The code, its redirect_uri or the PKCE verifier does not match.",
        ),
    }
}

fn userinfo(state: &State, req: &Recorded, view: impl Fn(&OauthUser) -> &Value) -> Reply {
    if let Some(status) = *lock(&state.userinfo_status) {
        return json(
            status,
            json!({"errors": [{"status": status.as_u16(), "title": "Internal error"}]}),
        );
    }
    let user = state
        .flow
        .access(req.bearer())
        .and_then(|grant| state.users.iter().find(|u| u.login == grant.user));
    match user {
        Some(user) => json(StatusCode::OK, view(user).clone()),
        None => json(
            StatusCode::UNAUTHORIZED,
            json!({"errors": [{"status": 401, "title": "Unauthorized"}]}),
        ),
    }
}
