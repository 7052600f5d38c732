//! GitHub as its docs describe it ("Authorizing OAuth apps", REST "users",
//! "users/emails", "orgs", "teams"): the token endpoint answers
//! `application/x-www-form-urlencoded` unless the request accepts JSON, and its
//! errors come with HTTP 200 (`error=bad_verification_code`); the API refuses a
//! request without `User-Agent` (403) or a valid token (401, "Bad credentials").
//! The API is served both at `/` (api.github.com) and at `/api/v3` (Enterprise).

use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{
    Authorized, CodeFlow, FakeServer, Recorded, Reply, TokenProblem, json, lock, redirect, reply,
    text,
};

pub const CLIENT_ID: &str = "Iv1.github-client";
pub const CLIENT_SECRET: &str = "github-secret";

#[derive(Debug, Clone)]
pub struct GithubUser {
    pub id: u64,
    pub login: String,
    pub name: Option<String>,
    /// The public email `/user` shows; `None` is GitHub's `null`.
    pub email: Option<String>,
    pub emails: Vec<GithubEmail>,
    /// Organization logins.
    pub orgs: Vec<String>,
    /// `(organization login, team slug)`.
    pub teams: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct GithubEmail {
    pub email: String,
    pub primary: bool,
    pub verified: bool,
}

/// The Octocat: public email shown on /user, member of `acme` (team `platform`).
pub fn octocat() -> GithubUser {
    GithubUser {
        id: 583231,
        login: "octocat".into(),
        name: Some("The Octocat".into()),
        email: Some("octocat@github.com".into()),
        emails: vec![GithubEmail {
            email: "octocat@github.com".into(),
            primary: true,
            verified: true,
        }],
        orgs: vec!["acme".into(), "other-org".into()],
        teams: vec![("acme".into(), "platform".into())],
    }
}

/// Hubot keeps its email private: `/user` says `null`, `/user/emails` lists a
/// verified primary address and an unverified secondary one; no organization.
pub fn hubot() -> GithubUser {
    GithubUser {
        id: 4242,
        login: "hubot".into(),
        name: None,
        email: None,
        emails: vec![
            GithubEmail {
                email: "old@hubot.example".into(),
                primary: false,
                verified: false,
            },
            GithubEmail {
                email: "hubot@users.example".into(),
                primary: true,
                verified: true,
            },
        ],
        orgs: vec![],
        teams: vec![],
    }
}

/// The token endpoint's answer format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    /// JSON if `Accept` asks for it, else form-encoded (GitHub's behaviour).
    Negotiated,
    /// Form-encoded whatever `Accept` says (as a proxy in front of GitHub Enterprise might).
    FormEncoded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    None,
    /// The token endpoint answers `error=bad_verification_code` (HTTP 200).
    BadVerificationCode,
    /// The API answers 401 "Bad credentials".
    BadCredentials,
}

struct State {
    flow: CodeFlow,
    users: Vec<GithubUser>,
    format: Mutex<TokenFormat>,
    failure: Mutex<Failure>,
}

pub struct FakeGithub {
    pub server: FakeServer,
    state: Arc<State>,
}

impl FakeGithub {
    pub async fn start(users: Vec<GithubUser>) -> Self {
        let state = Arc::new(State {
            flow: CodeFlow::new(CLIENT_ID, CLIENT_SECRET),
            users,
            format: Mutex::new(TokenFormat::Negotiated),
            failure: Mutex::new(Failure::None),
        });
        let handler_state = state.clone();
        let server = FakeServer::start(move |req| route(&handler_state, req)).await;
        FakeGithub { server, state }
    }

    pub fn base(&self) -> String {
        self.server.base()
    }

    pub fn queue_user(&self, login: &str) {
        self.state.flow.queue_user(login);
    }

    pub fn deny_next(&self) {
        self.state.flow.deny_next();
    }

    pub fn token_format(&self, format: TokenFormat) {
        *lock(&self.state.format) = format;
    }

    pub fn fail_token_exchange(&self) {
        *lock(&self.state.failure) = Failure::BadVerificationCode;
    }

    pub fn fail_api(&self) {
        *lock(&self.state.failure) = Failure::BadCredentials;
    }
}

fn route(state: &State, req: &Recorded) -> Reply {
    let path = req.path.strip_prefix("/api/v3").unwrap_or(&req.path);
    match (&req.method, path) {
        (&Method::GET, "/login/oauth/authorize") => authorize(state, req),
        (&Method::POST, "/login/oauth/access_token") => access_token(state, req),
        (&Method::GET, "/user" | "/user/emails" | "/user/orgs" | "/user/teams") => {
            api(state, req, path)
        }
        _ => json(
            StatusCode::NOT_FOUND,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
        ),
    }
}

fn authorize(state: &State, req: &Recorded) -> Reply {
    let denied = [
        ("error", "access_denied"),
        (
            "error_description",
            "The user has denied your application access.",
        ),
        (
            "error_uri",
            "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied",
        ),
    ];
    match state.flow.authorize(&req.query, &denied) {
        Authorized::Redirect(target) => redirect(&target),
        Authorized::Refused(problem) => text(StatusCode::BAD_REQUEST, &problem),
    }
}

fn access_token(state: &State, req: &Recorded) -> Reply {
    let wants_json = req
        .header("accept")
        .is_some_and(|a| a.contains("application/json"))
        && *lock(&state.format) == TokenFormat::Negotiated;
    let params = req.params();
    let outcome = match *lock(&state.failure) {
        Failure::BadVerificationCode => Err(TokenProblem::BadCode),
        _ => state.flow.redeem(req, &params),
    };
    let pairs: Vec<(&str, String)> = match outcome {
        Ok((_, token, grant)) => vec![
            ("access_token", token),
            // GitHub lists granted scopes separated by commas.
            (
                "scope",
                grant.scope.split(' ').collect::<Vec<_>>().join(","),
            ),
            ("token_type", "bearer".into()),
        ],
        Err(problem) => {
            let (error, description) = match problem {
                TokenProblem::InvalidClient => (
                    "incorrect_client_credentials",
                    "The client_id and/or client_secret passed are incorrect.",
                ),
                TokenProblem::RedirectMismatch => (
                    "redirect_uri_mismatch",
                    "The redirect_uri MUST match the registered callback URL for this application.",
                ),
                TokenProblem::BadCode | TokenProblem::PkceFailed => (
                    "bad_verification_code",
                    "The code passed is incorrect or expired.",
                ),
            };
            vec![
                ("error", error.into()),
                ("error_description", description.into()),
                (
                    "error_uri",
                    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/".into(),
                ),
            ]
        }
    };
    // Errors too are HTTP 200 here.
    if wants_json {
        let object: serde_json::Map<String, Value> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        json(StatusCode::OK, Value::Object(object))
    } else {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        reply(
            StatusCode::OK,
            "application/x-www-form-urlencoded; charset=utf-8",
            body,
        )
    }
}

fn api(state: &State, req: &Recorded, path: &str) -> Reply {
    if req.header("user-agent").is_none() {
        return text(
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.",
        );
    }
    let grant = state.flow.access(req.bearer());
    let user = grant
        .as_ref()
        .filter(|_| *lock(&state.failure) != Failure::BadCredentials)
        .and_then(|g| state.users.iter().find(|u| u.login == g.user));
    let (Some(grant), Some(user)) = (grant.as_ref(), user) else {
        return json(
            StatusCode::UNAUTHORIZED,
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}),
        );
    };
    let scopes: Vec<&str> = grant.scope.split([' ', ',']).collect();
    let may_read_orgs = scopes
        .iter()
        .any(|s| ["read:org", "user", "repo"].contains(s));
    match path {
        "/user" => json(
            StatusCode::OK,
            json!({
                "login": user.login,
                "id": user.id,
                "node_id": format!("MDQ6VXNlcj{}", user.id),
                "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", user.id),
                "html_url": format!("https://github.com/{}", user.login),
                "type": "User",
                "site_admin": false,
                "name": user.name,
                "company": null,
                "email": user.email,
                "bio": null,
            }),
        ),
        "/user/emails" => json(
            StatusCode::OK,
            Value::Array(
                user.emails
                    .iter()
                    .map(|e| {
                        json!({
                            "email": e.email,
                            "primary": e.primary,
                            "verified": e.verified,
                            "visibility": if e.primary { Value::from("private") } else { Value::Null },
                        })
                    })
                    .collect(),
            ),
        ),
        // Both need a scope that covers organizations (read:org, user or repo).
        _ if !may_read_orgs => json(
            StatusCode::FORBIDDEN,
            json!({"message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com/rest", "status": "403"}),
        ),
        "/user/orgs" => json(
            StatusCode::OK,
            Value::Array(
                user.orgs
                    .iter()
                    .enumerate()
                    .map(|(i, login)| {
                        json!({"login": login, "id": 1000 + i, "url": format!("https://api.github.com/orgs/{login}"), "description": null})
                    })
                    .collect(),
            ),
        ),
        _ => json(
            StatusCode::OK,
            Value::Array(
                user.teams
                    .iter()
                    .enumerate()
                    .map(|(i, (org, slug))| {
                        json!({
                            "id": 2000 + i,
                            "name": slug.replace('-', " "),
                            "slug": slug,
                            "privacy": "closed",
                            "permission": "pull",
                            "organization": {"login": org, "id": 1000 + i},
                        })
                    })
                    .collect(),
            ),
        ),
    }
}
