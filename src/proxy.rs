//! The request phases for everything outside `/oauth2/` (DESIGN §1): match the
//! rule, authenticate, authorise, set identity headers, stream to the upstream.
//! Spoofed identity headers were already stripped by the dispatcher.

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;

use crate::App;
use crate::identity::encode_header_value;
use crate::policy::{Denied, PathRefused, Requirement, collapse_slashes};
use crate::respond::{self, Problem};
use crate::server::ConnInfo;
use crate::session::Session;
use crate::{Body, now_unix};

pub const ACCESS_TOKEN_HEADER: &str = "x-forwarded-access-token";

pub async fn handle(app: &App, mut req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
    let html = respond::wants_html(req.method(), req.headers());
    let requirement = match app.policy.judge(req.method(), req.uri().path()) {
        Ok(requirement) => requirement,
        Err(refused) => return respond::problem(Problem::from(refused), html),
    };
    // The upstream gets the path as the rules judged it: `//public/x` could
    // be read as host `public`, path `/x`.
    if let Some(collapsed) = collapse_slashes(req.uri().path()) {
        match with_path(req.uri(), &collapsed) {
            Some(uri) => *req.uri_mut() = uri,
            None => return respond::problem(Problem::from(PathRefused::NotAbsolute), html),
        }
    }
    let Authenticated {
        session,
        set_cookies,
    } = authenticate(app, req.headers());

    let admitted = match admit(app, session.as_deref(), &requirement) {
        Admission::Anonymous => None,
        Admission::User(session) => Some(session),
        Admission::Denied(denied) => {
            return respond::with_cookies(
                respond::problem(Problem::from(denied), html),
                set_cookies,
            );
        }
        Admission::SignInFirst { api } => {
            let resp = respond::unauthenticated(html && !api, &sign_in_location(&req));
            return respond::with_cookies(resp, set_cookies);
        }
    };
    // Not held across the upstream's await, so not carried in every request's future.
    drop(requirement);

    // Before identity headers are added: see `prepare_request`.
    crate::upstream::prepare_request(&mut req);
    let headers = req.headers_mut();
    if let Some(session) = admitted {
        set_identity_headers(app, headers, session);
    }
    app.sessions.strip_own_cookies(headers);
    let proto = if conn.tls { "https" } else { "http" };
    crate::headers::set_forwarded(
        headers,
        &conn.peer_ip,
        &app.config.server.trusted_proxies,
        proto,
    );

    let resp = match app.upstream.forward(req).await {
        Ok(resp) => resp,
        Err(e) => respond::problem(Problem::from(e), html),
    };
    respond::with_cookies(resp, set_cookies)
}

/// What the matched rule makes of a request's session.
pub enum Admission<'s> {
    /// Let through without identity: a public path, with no session or with
    /// a user the policy refuses (on a public path they are simply anonymous).
    Anonymous,
    /// Let through as this user.
    User(&'s Session),
    /// Signed in, but refused.
    Denied(Denied),
    /// Not signed in where that is needed; `api` from the rule.
    SignInFirst { api: bool },
}

/// The one admission decision, for the proxy path and for forward-auth.
pub fn admit<'s>(
    app: &App,
    session: Option<&'s Session>,
    requirement: &Requirement<'_>,
) -> Admission<'s> {
    match (session, requirement) {
        (Some(s), _) => match app.policy.authorize(&s.identity, requirement) {
            Ok(()) => Admission::User(s),
            Err(_) if *requirement == Requirement::Public => Admission::Anonymous,
            Err(denied) => Admission::Denied(denied),
        },
        (None, Requirement::Public) => Admission::Anonymous,
        (None, Requirement::SignedIn { api, .. }) => Admission::SignInFirst { api: *api },
    }
}

/// `uri` with its path replaced (query, and any scheme and authority, kept).
fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// The session of this request, if any, and the Set-Cookie values the response
/// must carry (clearing a bad cookie, or refreshing `last_seen_at`).
pub struct Authenticated {
    pub session: Option<Arc<Session>>,
    pub set_cookies: Vec<HeaderValue>,
}

pub fn authenticate(app: &App, headers: &HeaderMap) -> Authenticated {
    let now = now_unix();
    let loaded = app.sessions.load(headers, now);
    let mut set_cookies = loaded.clear;
    let mut session = loaded.session;
    if let Some(s) = session
        .as_mut()
        .filter(|s| app.sessions.needs_touch(s, now))
    {
        let touched = Arc::make_mut(s);
        touched.last_seen_at = now;
        match app.sessions.store(touched, headers) {
            Ok(cookies) => set_cookies.extend(cookies),
            // It loaded, so it fits; should it not, the old cookie stays.
            Err(too_large) => tracing::warn!(%too_large, "session not refreshed"),
        }
    }
    Authenticated {
        session,
        set_cookies,
    }
}

/// Identity headers from the `[headers]` map, plus the tokens when configured.
/// Made once per opened session (see `Session::upstream_headers`); each request
/// clones them, a reference count per value.
pub fn set_identity_headers(app: &App, headers: &mut HeaderMap, session: &Session) {
    let identity_headers = session
        .upstream_headers
        .get_or_init(|| identity_headers(app, session));
    for (name, value) in identity_headers {
        headers.insert(name.clone(), value.clone());
    }
}

fn identity_headers(app: &App, session: &Session) -> Box<[(HeaderName, HeaderValue)]> {
    let mut made = Vec::with_capacity(app.config.headers.len() + 2);
    for (name, claim) in &app.config.headers {
        // "provider" names the provider that signed the user in (the session's).
        let value = match claim.as_str() {
            "provider" => encode_header_value(&session.provider),
            claim => session.identity.header_value(claim),
        };
        if let Some(value) = value {
            made.push((name.clone(), value));
        }
    }
    let upstream = &app.config.upstream;
    let tokens = &session.tokens;
    if upstream.pass_access_token
        && let Some(v) = tokens
            .access_token
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
    {
        made.push((HeaderName::from_static(ACCESS_TOKEN_HEADER), v));
    }
    if upstream.pass_id_token
        && let Some(v) = tokens
            .id_token
            .as_deref()
            .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
    {
        made.push((AUTHORIZATION, v));
    }
    made.into_boxed_slice()
}

/// `/oauth2/sign_in?rd=<original path and query>`.
pub fn sign_in_location<B>(req: &Request<B>) -> String {
    let original = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let rd: String = url::form_urlencoded::byte_serialize(original.as_bytes()).collect();
    format!("/oauth2/sign_in?rd={rd}")
}
