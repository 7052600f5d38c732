//! Facebook Login's manual flow and the Graph API as documented: a versioned
//! `/<v>/dialog/oauth`, `/<v>/oauth/access_token` taking its parameters by GET or
//! POST (client credentials as parameters) and answering JSON, and
//! `/<v>/me?fields=id,name,email,picture` with the picture nested as
//! `picture.data.url`. Errors are Graph error objects with status 400.

use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::{
    Authorized, CodeFlow, FakeServer, Recorded, Reply, TokenProblem, find, json, lock, redirect,
    text,
};

pub const VERSION: &str = "v21.0";
pub const CLIENT_ID: &str = "1234567890123456";
pub const CLIENT_SECRET: &str = "facebook-app-secret";

#[derive(Debug, Clone)]
pub struct FacebookUser {
    /// App-scoped user id, a string of digits.
    pub id: String,
    pub name: String,
    /// Facebook returns only confirmed emails; `None` when the user has none (or declined).
    pub email: Option<String>,
}

pub fn mark() -> FacebookUser {
    FacebookUser {
        id: "10158123456789012".into(),
        name: "Mark Example".into(),
        email: Some("mark@fb.example".into()),
    }
}

/// A Graph API error object.
#[derive(Debug, Clone)]
pub struct GraphError {
    pub message: String,
    pub kind: String,
    pub code: u32,
}

impl GraphError {
    /// What `/me` answers for an expired or revoked token.
    pub fn invalid_token() -> Self {
        Self {
            message: "Invalid OAuth access token.".into(),
            kind: "OAuthException".into(),
            code: 190,
        }
    }

    fn reply(&self) -> Reply {
        json(
            StatusCode::BAD_REQUEST,
            json!({"error": {
                "message": self.message,
                "type": self.kind,
                "code": self.code,
                "fbtrace_id": "AbCdEfGhIjK",
            }}),
        )
    }
}

struct State {
    flow: CodeFlow,
    users: Vec<FacebookUser>,
    me_error: Mutex<Option<GraphError>>,
    token_error: Mutex<Option<GraphError>>,
}

pub struct FakeFacebook {
    pub server: FakeServer,
    state: Arc<State>,
}

impl FakeFacebook {
    pub async fn start(users: Vec<FacebookUser>) -> Self {
        let state = Arc::new(State {
            flow: CodeFlow::new(CLIENT_ID, CLIENT_SECRET),
            users,
            me_error: Mutex::new(None),
            token_error: Mutex::new(None),
        });
        let handler_state = state.clone();
        let server = FakeServer::start(move |req| route(&handler_state, req)).await;
        FakeFacebook { server, state }
    }

    /// `http://127.0.0.1:PORT/v21.0`, the versioned base of every endpoint.
    pub fn versioned(&self) -> String {
        format!("{}/{VERSION}", self.server.base())
    }

    pub fn queue_user(&self, id: &str) {
        self.state.flow.queue_user(id);
    }

    pub fn deny_next(&self) {
        self.state.flow.deny_next();
    }

    /// `/me` answers this error from now on.
    pub fn fail_me(&self, error: GraphError) {
        *lock(&self.state.me_error) = Some(error);
    }

    /// The token endpoint answers this error from now on.
    pub fn fail_token(&self, error: GraphError) {
        *lock(&self.state.token_error) = Some(error);
    }
}

fn route(state: &State, req: &Recorded) -> Reply {
    let Some(path) = req.path.strip_prefix(&format!("/{VERSION}")) else {
        return GraphError {
            message: "Unknown path components".into(),
            kind: "OAuthException".into(),
            code: 2500,
        }
        .reply();
    };
    match (&req.method, path) {
        (&Method::GET, "/dialog/oauth") => dialog(state, req),
        (&Method::GET | &Method::POST, "/oauth/access_token") => access_token(state, req),
        (&Method::GET, "/me") => me(state, req),
        _ => GraphError {
            message: format!("Unknown path components: {path}"),
            kind: "OAuthException".into(),
            code: 2500,
        }
        .reply(),
    }
}

fn dialog(state: &State, req: &Recorded) -> Reply {
    let denied = [
        ("error_reason", "user_denied"),
        ("error", "access_denied"),
        ("error_description", "Permissions error."),
    ];
    match state.flow.authorize(&req.query, &denied) {
        Authorized::Redirect(target) => redirect(&target),
        Authorized::Refused(problem) => text(StatusCode::BAD_REQUEST, &problem),
    }
}

fn access_token(state: &State, req: &Recorded) -> Reply {
    if let Some(error) = lock(&state.token_error).clone() {
        return error.reply();
    }
    let params = req.params();
    // Facebook documents the app secret only as a parameter, never HTTP Basic.
    let outcome =
        if req.header("authorization").is_some() && find(&params, "client_secret").is_none() {
            Err(TokenProblem::InvalidClient)
        } else {
            state.flow.redeem(req, &params)
        };
    match outcome {
        Ok((_, token, _)) => json(
            StatusCode::OK,
            json!({"access_token": token, "token_type": "bearer", "expires_in": 5183944}),
        ),
        Err(problem) => {
            let (message, code) = match problem {
                TokenProblem::InvalidClient => ("Error validating client secret.", 1),
                TokenProblem::RedirectMismatch => (
                    "Can't load URL: The domain of this URL isn't included in the app's domains.",
                    191,
                ),
                TokenProblem::BadCode | TokenProblem::PkceFailed => {
                    ("This authorization code has been used.", 100)
                }
            };
            GraphError {
                message: message.into(),
                kind: "OAuthException".into(),
                code,
            }
            .reply()
        }
    }
}

fn me(state: &State, req: &Recorded) -> Reply {
    if let Some(error) = lock(&state.me_error).clone() {
        return error.reply();
    }
    let token = req.query_param("access_token").or(req.bearer());
    let Some(grant) = state.flow.access(token) else {
        return match token {
            None => GraphError {
                message: "An active access token must be used to query information about the current user.".into(),
                kind: "OAuthException".into(),
                code: 2500,
            },
            Some(_) => GraphError::invalid_token(),
        }
        .reply();
    };
    let Some(user) = state.users.iter().find(|u| u.id == grant.user) else {
        return GraphError::invalid_token().reply();
    };
    // Only the fields asked for, and `id` always.
    let fields = req.query_param("fields").unwrap_or("");
    let mut me = Map::new();
    me.insert("id".into(), json!(user.id));
    for field in fields.split(',').map(str::trim) {
        match field {
            "name" => {
                me.insert("name".into(), json!(user.name));
            }
            "email" => {
                if let Some(email) = &user.email {
                    me.insert("email".into(), json!(email));
                }
            }
            "picture" => {
                me.insert(
                    "picture".into(),
                    json!({"data": {
                        "height": 50,
                        "is_silhouette": false,
                        "url": format!("https://platform-lookaside.fbsbx.com/platform/profilepic/?asid={}", user.id),
                        "width": 50,
                    }}),
                );
            }
            _ => {}
        }
    }
    json(StatusCode::OK, Value::Object(me))
}
