//! Several apps behind one portcullis (README, "Several apps behind one
//! portcullis"): the `[[upstreams]]` entries, tried in order by host and path
//! prefix, then `[upstream]` for the rest. Each route has its own upstream
//! client, rules and identity header map; `[upstream]` alone is one route that
//! takes everything, so there is one mechanism for one app or many.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, Request};
use serde::{Serialize, Serializer};
use tokio_util::task::TaskTracker;

use crate::assertion::{ASSERTION_HEADER, Keys, Signer};
use crate::authn::ACCESS_TOKEN_HEADER;
use crate::config::{Config, UpstreamConfig};
use crate::policy::{PathOptions, PathRefused, Policy, readings_of};
use crate::redirect::AllowedHost;
use crate::upstream::Upstream;

/// Every route, built once from the configuration.
pub struct Routes {
    /// `[[upstreams]]` in order, then `[upstream]` (no host, prefix `/`) when enabled.
    routes: Box<[Route]>,
    /// One route that takes every request: nothing to match.
    only_one: bool,
    /// How paths are read for matching prefixes (`[access]`; folded readings
    /// are compared with folded prefixes whenever a prefix has capitals).
    paths: PathOptions,
    /// The `[access]` policy under the top-level `[[rules]]`.
    global: Policy,
    /// The distinct identity header maps of the routes.
    header_sets: Box<[HeaderSet]>,
    /// Upgraded connections of every route's upstream, for the server to wait on.
    tunnels: TaskTracker,
    /// What every route's upstream client was built with, besides its settings.
    body_read_timeout: Duration,
    /// The host patterns of routes whose hosts get the session cookie, and
    /// `public_url`: where sign-in may send the browser back to.
    signed_in_hosts: Box<[HostPattern]>,
    /// `[access] allowed_redirect_domains`: other hosts `rd` may lead to.
    allowed_redirect_domains: Box<[AllowedHost]>,
    public_url: url::Url,
    /// `GET /oauth2/jwks.json`, serialised once; `None` when no route sends
    /// a signed assertion.
    jwks: Option<bytes::Bytes>,
}

/// One app: which requests it takes, where they go, and how they are judged.
pub struct Route {
    host: Option<HostPattern>,
    prefix: PathPrefix,
    /// What `upstream` was built from: a reload with the same keeps it.
    settings: UpstreamConfig,
    pub upstream: Arc<Upstream>,
    /// Its rules (or the top-level ones) under the global `[access]` policy.
    pub policy: Policy,
    /// Index into [`Routes::header_sets`]; also the index of the identity
    /// headers an opened session caches for it.
    header_set: usize,
}

/// The identity headers a route sends: its header map, token options and
/// signed assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSet {
    /// Upstream header name → claim name.
    pub map: Vec<(HeaderName, String)>,
    pub pass_access_token: bool,
    pub pass_id_token: bool,
    /// `assertion = true`: how its `X-Portcullis-Assertion` is signed.
    pub assertion: Option<Signer>,
}

impl Routes {
    /// Builds every route's upstream client, policy and header map. Every
    /// upstream tracks its upgraded connections in `tunnels`, which may
    /// outlive this table (the server waits on it at shutdown). Starts no
    /// task: see [`Routes::watch_emails_file`].
    /// `previous`: the routes of the configuration this one replaces (hot
    /// reload), whose upstream clients, with their pooled connections, are
    /// kept where the settings did not change.
    pub fn new(
        config: &Config,
        tunnels: TaskTracker,
        previous: Option<&Routes>,
    ) -> std::io::Result<Self> {
        let global = Policy::new(config)?;
        let body_read_timeout = config.server.body_read_timeout;
        let upstream = |settings: &UpstreamConfig| {
            let kept = previous
                .filter(|p| p.body_read_timeout == body_read_timeout)
                .and_then(|p| p.routes.iter().find(|r| r.settings == *settings));
            match kept {
                Some(route) => route.upstream.clone(),
                None => Arc::new(Upstream::with_tunnels(
                    settings,
                    body_read_timeout,
                    tunnels.clone(),
                )),
            }
        };
        let mut header_sets: Vec<HeaderSet> = Vec::new();
        let mut set_of = |set: HeaderSet| match header_sets.iter().position(|s| *s == set) {
            Some(i) => i,
            None => {
                header_sets.push(set);
                header_sets.len() - 1
            }
        };
        let mut keys = Keys::new(&config.session, &config.server.public_url);
        let mut routes = Vec::with_capacity(config.upstreams.len() + 1);
        for r in &config.upstreams {
            routes.push(Route {
                host: r.host.clone(),
                prefix: r.path_prefix.clone(),
                settings: r.upstream.clone(),
                upstream: upstream(&r.upstream),
                policy: global.with_rules(r.rules.as_deref().unwrap_or(&config.rules)),
                header_set: set_of(HeaderSet {
                    map: r.headers.clone().unwrap_or_else(|| config.headers.clone()),
                    pass_access_token: r.upstream.pass_access_token,
                    pass_id_token: r.upstream.pass_id_token,
                    assertion: r.upstream.assertion.as_ref().map(|a| keys.signer(a)),
                }),
            });
        }
        if config.upstream_enabled {
            let u = &config.upstream;
            routes.push(Route {
                host: None,
                prefix: PathPrefix::root(),
                settings: u.clone(),
                upstream: upstream(u),
                policy: global.with_rules(&config.rules),
                header_set: set_of(HeaderSet {
                    map: config.headers.clone(),
                    pass_access_token: u.pass_access_token,
                    pass_id_token: u.pass_id_token,
                    assertion: u.assertion.as_ref().map(|a| keys.signer(a)),
                }),
            });
        }
        let public_host = config.server.public_url.host_str().unwrap_or_default();
        let domain = config.session.domain.as_deref();
        let mut signed_in_hosts = Vec::new();
        for (i, r) in config.upstreams.iter().enumerate() {
            let Some(host) = &r.host else { continue };
            if host.gets_session_cookie(public_host, domain) {
                signed_in_hosts.push(host.clone());
            } else {
                tracing::warn!(
                    "upstreams[{i}].host = \"{host}\": the session cookie is not sent there \
                     (it is not server.public_url's host, and session.domain does not cover \
                     it), so nobody is signed in on it; set session.domain to a parent domain \
                     of both hosts"
                );
            }
        }
        let only_one = matches!(&routes[..], [r] if r.host.is_none() && r.prefix.is_root());
        let paths = PathOptions {
            case_sensitive: config.access.case_sensitive_paths,
            encoded_slashes: config.access.allow_encoded_slashes,
            fold_unchanged: routes.iter().any(|r| r.prefix.exact != r.prefix.folded),
        };
        Ok(Self {
            routes: routes.into_boxed_slice(),
            only_one,
            paths,
            global,
            header_sets: header_sets.into_boxed_slice(),
            tunnels,
            body_read_timeout,
            signed_in_hosts: signed_in_hosts.into_boxed_slice(),
            allowed_redirect_domains: config.access.allowed_redirect_domains.clone().into(),
            public_url: config.server.public_url.clone(),
            jwks: keys.jwks(),
        })
    }

    /// Re-reads `access.allowed_emails_file` on change, for every route (their
    /// policies share the list).
    pub fn watch_emails_file(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.global.watch_emails_file()
    }

    /// The global `[access]` policy (what sign-in and refresh check), under
    /// the top-level `[[rules]]`.
    pub fn policy(&self) -> &Policy {
        &self.global
    }

    /// The upgraded connections in flight on every route's upstream.
    pub fn tunnels(&self) -> TaskTracker {
        self.tunnels.clone()
    }

    pub fn header_sets(&self) -> &[HeaderSet] {
        &self.header_sets
    }

    pub fn header_set(&self, route: &Route) -> &HeaderSet {
        &self.header_sets[route.header_set]
    }

    /// Every header name some route sets: what the spoof guard strips from
    /// every request, so that no route's identity header can be forged on
    /// another. `X-Forwarded-Access-Token` and `X-Portcullis-Assertion`
    /// always; `Authorization` when some route passes the id_token in it.
    pub fn protected_headers(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .header_sets
            .iter()
            .flat_map(|set| set.map.iter().map(|(name, _)| name.as_str()))
            .collect();
        names.push(ACCESS_TOKEN_HEADER);
        names.push(ASSERTION_HEADER);
        if self.header_sets.iter().any(|set| set.pass_id_token) {
            names.push("authorization");
        }
        names
    }

    /// The claims some route's header map names or some route's rules
    /// match: what an identity keeps.
    pub fn wanted_claims(&self) -> impl Iterator<Item = &str> {
        self.header_sets
            .iter()
            .flat_map(|set| set.map.iter().map(|(_, claim)| claim.as_str()))
            .chain(self.routes.iter().flat_map(|r| r.policy.claim_paths()))
            .chain(self.global.claim_paths())
    }

    /// Whether the client's own `Authorization` header must not reach
    /// `route`'s upstream: `pass_authorization = false`, or its header map
    /// writes `Authorization` itself (`pass_id_token`), so that the app never
    /// takes a client's header for portcullis'.
    pub fn strips_client_authorization(&self, route: &Route) -> bool {
        !route.settings.pass_authorization || self.header_set(route).pass_id_token
    }

    /// The public keys of the signed assertions (a JWKS), when some route
    /// sends one.
    pub fn jwks(&self) -> Option<&bytes::Bytes> {
        self.jwks.as_ref()
    }

    pub fn passes_access_token(&self) -> bool {
        self.header_sets.iter().any(|set| set.pass_access_token)
    }

    pub fn passes_id_token(&self) -> bool {
        self.header_sets.iter().any(|set| set.pass_id_token)
    }

    /// Whether sign-in, sign-out and forward-auth may send the browser to
    /// `url`, an absolute URL (already refused if it has user info, an IP
    /// host, or a path that would not pass as a same-site `rd`): the one
    /// test for every absolute `rd`. It passes on `public_url`'s own origin;
    /// on a host a route names that the session cookie reaches (see
    /// [`HostPattern`]), with `public_url`'s scheme and port; or on a host
    /// and port of `[access] allowed_redirect_domains`, over https (or http
    /// when `public_url` is http).
    pub fn sends_back_to(&self, url: &url::Url) -> bool {
        if url.origin() == self.public_url.origin() {
            return true;
        }
        let route_host = url.scheme() == self.public_url.scheme()
            && url.port_or_known_default() == self.public_url.port_or_known_default()
            && url.host_str().is_some_and(|host| {
                self.signed_in_hosts
                    .iter()
                    .any(|pattern| pattern.matches(host))
            });
        let scheme_ok = url.scheme() == "https" || self.public_url.scheme() == "http";
        route_host
            || (scheme_ok
                && self
                    .allowed_redirect_domains
                    .iter()
                    .any(|allowed| allowed.admits(url)))
    }

    /// `public_url`'s sign-in page, asked to send the browser back to `back`
    /// afterwards (an absolute URL or a path, checked again there).
    pub fn central_sign_in(&self, back: &str) -> String {
        let rd: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
        let mut sign_in = self.public_url.clone();
        sign_in.set_path("/oauth2/sign_in");
        sign_in.set_query(None);
        format!("{sign_in}?rd={rd}")
    }

    /// Where an unauthenticated browser on `route` is sent to sign in: a
    /// path on this host, or, on a route's own host other than
    /// `public_url`'s, `public_url`'s sign-in page (where the provider calls
    /// back), asked to send it back here afterwards.
    pub fn sign_in_location<B>(&self, route: &Route, req: &Request<B>) -> String {
        let here = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let host = request_host(req.headers(), req.uri());
        let elsewhere = route.host.is_some()
            && host.is_some_and(|h| {
                !bare_host(h).eq_ignore_ascii_case(self.public_url.host_str().unwrap_or_default())
            });
        let back = match host {
            Some(host) if elsewhere => {
                let back = format!("{}://{host}{here}", self.public_url.scheme());
                url::Url::parse(&back)
                    .ok()
                    .filter(|url| self.sends_back_to(url))
                    .map(String::from)
            }
            _ => None,
        };
        match back {
            Some(back) => self.central_sign_in(&back),
            None => {
                let rd: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
                format!("/oauth2/sign_in?rd={rd}")
            }
        }
    }

    /// The route of a request to `host` (its `Host` / `:authority`, port and
    /// all; `None` without one) for `raw_path` (no query). The path is read
    /// every way an upstream may read it (as the rules judge it): every
    /// reading must pick the same route, or the request is refused, since a
    /// reading that picked another route would escape this route's rules.
    /// `Ok(None)`: no route takes it.
    pub fn route(&self, host: Option<&str>, raw_path: &str) -> Result<Option<&Route>, PathRefused> {
        if self.only_one {
            return Ok(self.routes.first());
        }
        let host = host.map(bare_host);
        let readings = readings_of(raw_path, self.paths)?;
        let mut picked = None;
        for (i, reading) in readings.iter().enumerate() {
            let route = self.routes.iter().position(|r| {
                r.host
                    .as_ref()
                    .is_none_or(|pattern| host.is_some_and(|h| pattern.matches(h)))
                    && r.prefix.matches(&reading.path, reading.folded)
            });
            if i > 0 && route != picked {
                return Err(PathRefused::AmbiguousRoute);
            }
            picked = route;
        }
        Ok(picked.map(|i| &self.routes[i]))
    }

    /// [`Routes::route`] for a request: its host from `Host`, or `:authority`
    /// for HTTP/2 without one (the server has already made sure the two agree).
    pub fn route_request<B>(&self, req: &Request<B>) -> Result<Option<&Route>, PathRefused> {
        if self.only_one {
            return Ok(self.routes.first());
        }
        self.route(request_host(req.headers(), req.uri()), req.uri().path())
    }
}

impl Route {
    /// Where the route's identity headers sit among an opened session's.
    pub fn header_set_index(&self) -> usize {
        self.header_set
    }
}

/// The request's host as sent: `Host`, else the target's authority.
pub fn request_host<'r>(headers: &'r HeaderMap, uri: &'r http::Uri) -> Option<&'r str> {
    headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

/// `host` without its port and trailing dots (`Wiki.Example.com.:443` →
/// `Wiki.Example.com`; case is ignored when comparing). An IP literal keeps
/// its brackets.
pub(crate) fn bare_host(host: &str) -> &str {
    let name = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.split(':').next().unwrap_or_default()
    };
    name.trim_end_matches('.')
}

/// `[[upstreams]] host`: one host, or every subdomain of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `wiki.example.com`, lower-cased.
    Exact(Box<str>),
    /// `*.example.com`, kept as `.example.com`: one or more labels before
    /// it; never `example.com` itself.
    Subdomains(Box<str>),
}

impl HostPattern {
    /// Refuses what is not a host name (letters, digits, `-`, `_` in
    /// dot-separated labels), a port, and a `*` anywhere but a leading `*.`.
    pub fn parse(written: &str) -> Result<Self, &'static str> {
        let lower = written.to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if name.contains(':') {
            return Err("must be a host name without a port (the port is ignored when matching)");
        }
        if name.contains('*') {
            return Err("may have `*` only as a whole first label: \"*.example.com\"");
        }
        let label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label) {
            return Err(
                "is not a host name, e.g. \"wiki.example.com\" or \"*.example.com\" (no scheme, port, path or trailing dot)",
            );
        }
        Ok(if wild {
            Self::Subdomains(format!(".{name}").into())
        } else {
            Self::Exact(name.into())
        })
    }

    /// `host`: without port and trailing dots ([`bare_host`]); any case.
    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host.eq_ignore_ascii_case(name),
            Self::Subdomains(suffix) => {
                let (host, suffix) = (host.as_bytes(), suffix.as_bytes());
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && host[host.len() - suffix.len() - 1] != b'.'
            }
        }
    }

    /// Whether a browser sends the session cookie to every host this
    /// matches: set for `public_host` alone, or for `domain` and its
    /// subdomains (`session.domain`, with or without its leading dot).
    fn gets_session_cookie(&self, public_host: &str, domain: Option<&str>) -> bool {
        let within = |name: &str| {
            domain.is_some_and(|d| {
                let d = d.trim_start_matches('.');
                name.eq_ignore_ascii_case(d)
                    || (name.len() > d.len()
                        && name.as_bytes()[name.len() - d.len() - 1] == b'.'
                        && name[name.len() - d.len()..].eq_ignore_ascii_case(d))
            })
        };
        match self {
            Self::Exact(name) => name.eq_ignore_ascii_case(public_host) || within(name),
            // `.example.com`: its subdomains are within `example.com`.
            Self::Subdomains(suffix) => within(&suffix[1..]),
        }
    }

    /// Every host `other` matches, this matches too.
    fn covers(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(_), Self::Subdomains(_)) => false,
            (Self::Subdomains(_), Self::Exact(b)) => self.matches(b),
            (Self::Subdomains(a), Self::Subdomains(b)) => b.ends_with(&**a),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Subdomains(suffix) => write!(f, "*{suffix}"),
        }
    }
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `[[upstreams]] path_prefix`, on segment boundaries: `/wiki` and `/wiki/`
/// both take `/wiki`, `/wiki/` and everything under it, never `/wikipedia`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrefix {
    /// Without its trailing `/`: empty for `/`, which takes every path.
    exact: Box<str>,
    /// Lower-cased, for case-folded readings of a path.
    folded: Box<str>,
}

impl PathPrefix {
    pub fn root() -> Self {
        Self {
            exact: "".into(),
            folded: "".into(),
        }
    }

    /// Refuses a prefix that a normalised path could never start with, or
    /// that means something else to an upstream: not starting with `/`,
    /// empty, `.` or `..` segments, and `%`, `\`, `;`, `*`, `?`, `#`,
    /// whitespace or control characters. Prefixes are compared with decoded
    /// paths, so they are written decoded.
    pub fn parse(written: &str) -> Result<Self, &'static str> {
        if !written.starts_with('/') {
            return Err("must start with '/'");
        }
        if written
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "%\\;*?#".contains(c))
        {
            return Err(
                "must be a plain path, written decoded: no %, \\, ;, *, ?, #, spaces or control characters",
            );
        }
        let trimmed = written.strip_suffix('/').unwrap_or(written);
        if trimmed
            .split('/')
            .skip(1)
            .any(|segment| matches!(segment, "" | "." | ".."))
        {
            return Err("must not have empty, '.' or '..' segments");
        }
        Ok(Self {
            exact: trimmed.into(),
            folded: trimmed.to_lowercase().into(),
        })
    }

    pub fn is_root(&self) -> bool {
        self.exact.is_empty()
    }

    /// `path` (a normalised reading) is the prefix or lies under it.
    fn matches(&self, path: &str, folded: bool) -> bool {
        let prefix = if folded { &self.folded } else { &self.exact };
        path.strip_prefix(&**prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exact.is_empty() {
            f.write_str("/")
        } else {
            f.write_str(&self.exact)
        }
    }
}

impl Serialize for PathPrefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Whether a route on `earlier` takes every request one on `later` would:
/// its host pattern covers the later one's (no host covers all) and its
/// prefix covers the later prefix.
pub fn covers(
    earlier: (Option<&HostPattern>, &PathPrefix),
    later: (Option<&HostPattern>, &PathPrefix),
) -> bool {
    let host = match (earlier.0, later.0) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a.covers(b),
    };
    host && earlier.1.matches(&later.1.exact, false)
}

#[cfg(test)]
mod tests;
