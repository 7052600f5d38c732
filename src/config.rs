//! Configuration: figment (config.toml + `PORTCULLIS_` environment) → [`RawConfig`]
//! → validated, typed [`Config`]. Validation collects every problem with its dotted
//! key, so an operator fixes a bad file in one pass.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use http::HeaderName;
use ipnet::IpNet;
use serde::{Deserialize, Serialize, Serializer};
use url::Url;

// === validated configuration ===

/// The validated configuration every other module reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    /// `[upstream]`: the app for every request no `[[upstreams]]` entry
    /// matches. Holds the defaults when the table is absent; then it is used
    /// only when there are no `[[upstreams]]` either (`upstream_enabled`).
    pub upstream: UpstreamConfig,
    /// Whether `[upstream]` takes requests: it is written, or no
    /// `[[upstreams]]` are. When false, a request no route matches gets 404.
    pub upstream_enabled: bool,
    /// `[[upstreams]]`: apps chosen by host and path prefix, in the order
    /// written (the first match wins), before `[upstream]`.
    pub upstreams: Vec<RouteConfig>,
    pub session: SessionConfig,
    pub access: AccessConfig,
    pub sign_in: SignInConfig,
    pub log: LogConfig,
    pub rules: Vec<RuleConfig>,
    /// Upstream header name → claim name: the defaults in their order, or a
    /// configured map sorted by key as written.
    #[serde(serialize_with = "ser_headers")]
    pub headers: Vec<(HeaderName, String)>,
    pub providers: Vec<ProviderConfig>,
    /// `[hooks] on_login` and its keys; `None` when no login hook is set.
    pub login_hook: Option<LoginHookConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// External origin (scheme, host, port); no path.
    pub public_url: Url,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Where `GET /metrics` is served, on a listener of its own; off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// CAs trusted for calls to providers, beside the system and webpki roots.
    pub extra_ca_file: Option<CaBundle>,
    pub trusted_proxies: Vec<IpNet>,
    /// Largest request head (request line + headers) accepted, in bytes.
    pub max_header_bytes: usize,
    #[serde(serialize_with = "ser_duration")]
    pub header_read_timeout: Duration,
    /// An HTTP/2 connection with no stream open for this long is closed.
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    /// Longest wait for the next bytes of a request body being forwarded.
    #[serde(serialize_with = "ser_duration")]
    pub body_read_timeout: Duration,
    /// Client connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Reload when the configuration file (or the TLS files) change, besides
    /// on SIGHUP.
    pub watch_config: bool,
}

/// `[log]`: how portcullis writes its log to stderr.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter (`info`, `portcullis=debug`); `RUST_LOG` overrides it.
    pub level: String,
    /// One `portcullis::access` event per request.
    pub access: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamConfig {
    pub url: Url,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    pub pass_access_token: bool,
    pub pass_id_token: bool,
    /// The client's own `Authorization` header goes on to the app (default);
    /// never where portcullis writes its own (`pass_id_token`).
    pub pass_authorization: bool,
    /// CAs trusted for an `https` upstream, beside the system and webpki roots.
    pub ca_file: Option<CaBundle>,
    /// The name sent as SNI and checked in the upstream's certificate, when
    /// not the URL's host.
    pub tls_server_name: Option<String>,
    pub insecure_skip_verify: bool,
    /// `client_cert_file` + `client_key_file`: mutual TLS to the upstream.
    pub client_cert: Option<ClientIdentity>,
    pub protocol: UpstreamProtocol,
    /// `assertion = true`: the signed identity assertion and its settings.
    pub assertion: Option<AssertionConfig>,
}

/// A route's `assertion_*` keys (`crate::assertion`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssertionConfig {
    /// `aud`: `assertion_audience`, or the route's `url` as written.
    pub audience: String,
    /// `exp - iat`, within [`crate::assertion::LIFETIMES`].
    #[serde(serialize_with = "ser_duration")]
    pub lifetime: Duration,
    /// `assertion_key_file`, read; `None`: the key derived from `session.secret`.
    pub key_file: Option<AssertionKeyFile>,
}

/// `assertion_key_file` and the P-256 key read from it.
#[derive(Debug, Clone)]
pub struct AssertionKeyFile {
    pub path: PathBuf,
    pub key: std::sync::Arc<crate::assertion::SigningKey>,
}

/// The same file holding the same key.
impl PartialEq for AssertionKeyFile {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.key.kid() == other.key.kid()
    }
}

// `portcullis check` shows the file, never the key.
impl Serialize for AssertionKeyFile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.path.serialize(s)
    }
}

/// One `[[upstreams]]` entry: which requests it takes, the app they go to,
/// and, when given, its own rules and header map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteConfig {
    /// Exact host or `*.domain` (any subdomain); absent = any host.
    pub host: Option<crate::routes::HostPattern>,
    /// `/` (every path) unless set.
    pub path_prefix: crate::routes::PathPrefix,
    #[serde(flatten)]
    pub upstream: UpstreamConfig,
    /// Its `[[upstreams.rules]]`; `None`: the top-level `[[rules]]` apply.
    pub rules: Option<Vec<RuleConfig>>,
    /// Its `[upstreams.headers]`; `None`: the top-level `[headers]` apply.
    #[serde(serialize_with = "ser_opt_headers")]
    pub headers: Option<Vec<(HeaderName, String)>>,
}

/// `upstream.protocol`: how requests travel to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (over TLS for https): upgrades work; the fast path.
    #[default]
    Http1,
    /// HTTP/2 over plain TCP, with prior knowledge (gRPC without TLS).
    H2c,
    /// HTTP/2 over TLS.
    H2,
    /// Over TLS, what ALPN agrees on (h2 or HTTP/1.1); HTTP/1.1 for http.
    Auto,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionConfig {
    pub secret: Secret,
    pub previous_secrets: Vec<Secret>,
    pub cookie_name: String,
    #[serde(serialize_with = "ser_duration")]
    pub lifetime: Duration,
    #[serde(serialize_with = "ser_opt_duration")]
    pub idle_timeout: Option<Duration>,
    /// Refresh the tokens when the access token expires within this.
    #[serde(serialize_with = "ser_duration")]
    pub refresh_before: Duration,
    /// Also refresh this long after the last refresh (or sign-in), so a user
    /// disabled at the provider loses access within it.
    #[serde(serialize_with = "ser_opt_duration")]
    pub refresh_interval: Option<Duration>,
    /// Resolved from `"auto"`: true when public_url is https.
    pub secure: bool,
    pub same_site: SameSite,
    pub domain: Option<String>,
    /// Where sessions live (`session.store`).
    pub store: StoreConfig,
}

/// `session.store`: in the cookie itself, or in Redis behind a small cookie.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum StoreConfig {
    Cookie,
    Redis(RedisConfig),
}

/// The `redis_*` keys of `[session]`, validated: either `url` names the
/// server, or `sentinels` and `master_name` find it (and `url`, if given,
/// only brings the scheme, credentials and database for the master).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisConfig {
    pub url: Option<RedisUrl>,
    /// `host:port` of each Sentinel; empty when `url` names the server.
    pub sentinels: Vec<String>,
    pub master_name: Option<String>,
    /// Put before every key and the invalidation channel's name; default `portcullis:`.
    pub key_prefix: String,
}

/// A `redis://` or `rediss://` URL. It may carry a password, so it prints,
/// debugs and serialises with the password replaced (`redis://:[redacted]@host`).
#[derive(Clone, PartialEq)]
pub struct RedisUrl(Secret);

impl RedisUrl {
    /// Only validation makes one: the value must be a URL the Redis client accepts.
    pub(crate) fn new(url: Secret) -> Self {
        Self(url)
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.0.expose().starts_with("rediss:")
    }

    /// `host:port` alone, for log lines.
    pub fn host(&self) -> String {
        match Url::parse(self.0.expose()) {
            Ok(u) => format!(
                "{}:{}",
                u.host_str().unwrap_or_default(),
                u.port().unwrap_or(6379)
            ),
            Err(_) => "[unparsable]".to_owned(),
        }
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(mut url) = Url::parse(self.0.expose()) else {
            return f.write_str("[redacted]");
        };
        if url.password().is_none() {
            return f.write_str(url.as_str());
        }
        let _ = url.set_password(Some("[redacted]"));
        // Shown as written rather than percent-encoded.
        f.write_str(&url.as_str().replacen("%5Bredacted%5D", "[redacted]", 1))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for RedisUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

/// `session.store` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStoreKind {
    Cookie,
    Redis,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessConfig {
    /// Lower-cased; `*` admits every domain.
    pub allowed_email_domains: Vec<String>,
    /// Lower-cased.
    pub allowed_emails: Vec<String>,
    pub allowed_emails_file: Option<PathBuf>,
    pub allowed_groups: Vec<String>,
    pub require_email_verified: bool,
    /// The upstream routes case-sensitively: rules do not also judge the
    /// path lower-cased.
    pub case_sensitive_paths: bool,
    /// `%2F` and `%5C` in paths are let through (refused by default).
    pub allow_encoded_slashes: bool,
    /// Hosts besides the routes' own that an absolute `rd` may lead to
    /// (forward-auth apps behind Traefik, Caddy or nginx).
    pub allowed_redirect_domains: Vec<crate::redirect::AllowedHost>,
    /// Every CORS preflight passes without a session (see `RuleConfig::skip_preflight`).
    pub skip_auth_preflight: bool,
    /// `Authorization: Bearer` tokens are accepted in place of a session.
    pub bearer_tokens: bool,
    /// How long an introspection answer is used (never beyond the token's `exp`).
    #[serde(serialize_with = "ser_duration")]
    pub introspection_cache: Duration,
}

/// `[hooks]`: the app's endpoint asked at sign-in whether the user may in,
/// and what to add to their identity (`login_hook.rs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoginHookConfig {
    pub on_login: HookTarget,
    /// Signs each call (`X-Portcullis-Signature`); at least 32 bytes.
    pub secret: Secret,
    /// Whole-call limit: connect, send, wait and read the answer.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    pub on_error: OnHookError,
    /// Ask again at each token refresh; otherwise what it added at sign-in
    /// is kept.
    pub on_refresh: bool,
}

/// Where the login hook is called.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookTarget {
    /// An `http://` or `https://` URL, POSTed to.
    Http(Url),
    /// `unix:/path`: a Unix socket, POSTed to at `/`.
    Unix(PathBuf),
}

/// `hooks.on_error`: what a hook that fails (unreachable, too slow, an
/// answer that is not one) means for the sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnHookError {
    Deny,
    Allow,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SignInConfig {
    /// With exactly one provider, skip the sign-in page and go straight to it.
    pub auto_redirect: bool,
    /// Where the operator's sign-in page template was read from.
    pub template_path: Option<PathBuf>,
    /// The operator's sign-in page template, read once at start.
    #[serde(skip)]
    pub template: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Exact path, prefix ending in `/`, or glob (`*` within a segment, `**` across).
    pub path: String,
    /// Upper-case method names; empty = every method.
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub public: bool,
    /// Signed-in users must be in one of these groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Unauthenticated requests get 401, never a redirect to sign-in.
    #[serde(default)]
    pub api: bool,
    /// The request's host (port ignored, any case): `app.example.com`, or
    /// `*.example.com` for its subdomains. Absent: any host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Signed-in users must have one of these addresses (any case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    /// Signed-in users' addresses must be in one of these domains
    /// (`example.com`, `.example.com` for subdomains; label boundaries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Claim path → accepted values: the user's claim must be (or hold) one
    /// of them, for every path listed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, Vec<String>>,
    /// A CORS preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) this rule matches passes without a
    /// session and without identity headers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_preflight: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderConfig {
    /// The table name under `[providers]`; part of the redirect URI.
    pub id: String,
    pub kind: ProviderKind,
    /// Defaults to the preset's name ("GitHub", ...) or else the id.
    pub display_name: String,
    /// An http(s) URL, a `data:image/` URL or a path starting with '/'.
    pub icon: Option<String>,
    pub client_id: String,
    /// Absent = public client (PKCE only).
    pub client_secret: Option<Secret>,
    /// What is requested: the preset's scopes (or `scopes`), then `extra_scopes`.
    pub scopes: Vec<String>,
    /// Added to the authorization URL (`auth_params`, and Google's `hd`).
    pub auth_params: BTreeMap<String, String>,
    pub token_auth_method: TokenAuthMethod,
    /// Always call the userinfo endpoint (otherwise only when the id_token lacks
    /// `email`). Default: true for GitLab, false otherwise.
    pub fetch_userinfo: bool,
    /// Sign-out also ends the session at the provider (OpenID Connect
    /// RP-Initiated Logout 1.0): the browser is sent to its end-session endpoint.
    pub idp_logout: bool,
    /// The end-session endpoint, instead of the discovered `end_session_endpoint`.
    pub end_session_url: Option<Url>,
    /// The RFC 7009 revocation endpoint, instead of the discovered (or the
    /// preset's) `revocation_endpoint`.
    pub revocation_url: Option<Url>,
    /// `[providers.<id>.claims]` for an OpenID Connect kind, GitHub or
    /// Facebook: where each standard claim is read from in the claims the
    /// provider gave (`kind = "oauth2"` keeps its paths in `Profile::Mapped`).
    /// `None`: the standard names.
    pub claims: Option<ClaimPaths>,
    /// Bearer tokens: audiences accepted besides `client_id`.
    pub extra_audiences: Vec<String>,
    /// Bearer tokens that are not JWTs are checked by RFC 7662 introspection.
    pub introspection: bool,
    /// The introspection endpoint, instead of the discovered `introspection_endpoint`.
    pub introspection_url: Option<Url>,
    pub protocol: Protocol,
}

/// How a provider signs users in: OpenID Connect, or plain OAuth 2.0 plus a profile API.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Oidc(OidcSettings),
    #[serde(rename = "oauth2")]
    OAuth2(OAuth2Settings),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OidcSettings {
    pub issuer: Url,
    /// Replace what discovery says, endpoint by endpoint.
    pub auth_url: Option<Url>,
    pub token_url: Option<Url>,
    pub userinfo_url: Option<Url>,
    pub checks: IdTokenChecks,
    /// Microsoft: the Graph base URL the groups of a groups overage are read
    /// from (`graph_base_url`, default `https://graph.microsoft.com`).
    pub graph_url: Option<Url>,
}

/// What a preset checks in a verified id_token beyond OpenID Connect Core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdTokenChecks {
    Standard,
    /// Google: `hd` must equal this Workspace domain (lower-cased).
    HostedDomain(String),
    /// Microsoft: `iss` may be the `{tenantid}` template filled with `tid`; when
    /// the list is non-empty, `tid` must be in it.
    Tenants {
        allowed: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OAuth2Settings {
    pub auth_url: Url,
    pub token_url: Url,
    pub userinfo_url: Url,
    /// A GitHub-style list of `{email, primary, verified}`.
    pub emails_url: Option<Url>,
    pub profile: Profile,
}

/// How the userinfo answer becomes claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// GitHub's /user (+ /user/emails, /user/orgs, /user/teams next to it).
    Github {
        organizations: Vec<String>,
        /// `org/team-slug`.
        teams: Vec<String>,
    },
    /// Graph's /me.
    Facebook,
    /// Any server: each identity field read from a dotted JSON path.
    Mapped(ClaimPaths),
}

/// Dotted JSON paths into the userinfo answer, one per identity field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimPaths {
    pub sub: String,
    pub email: String,
    pub email_verified: String,
    pub name: String,
    pub preferred_username: String,
    pub picture: String,
    pub groups: String,
}

impl Default for ClaimPaths {
    fn default() -> Self {
        Self {
            sub: "sub".into(),
            email: "email".into(),
            email_verified: "email_verified".into(),
            name: "name".into(),
            preferred_username: "preferred_username".into(),
            picture: "picture".into(),
            groups: "groups".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenID Connect provider, by its issuer.
    Oidc,
    Google,
    Microsoft,
    Github,
    Gitlab,
    Linkedin,
    Facebook,
    Oauth2,
}

impl ProviderKind {
    /// The provider's own name, shown on the sign-in page unless display_name is set.
    pub fn preset_name(self) -> Option<&'static str> {
        match self {
            Self::Google => Some("Google"),
            Self::Microsoft => Some("Microsoft"),
            Self::Github => Some("GitHub"),
            Self::Gitlab => Some("GitLab"),
            Self::Linkedin => Some("LinkedIn"),
            Self::Facebook => Some("Facebook"),
            Self::Oidc | Self::Oauth2 => None,
        }
    }

    /// Speaks OpenID Connect (discovery, id_token); the others are plain OAuth 2.0.
    pub fn is_oidc(self) -> bool {
        !matches!(self, Self::Github | Self::Facebook | Self::Oauth2)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
}

impl Config {
    /// `<public_url>/oauth2/callback/<provider id>`: the URI registered at the provider.
    pub fn redirect_uri(&self, provider_id: &str) -> Url {
        let mut url = self.server.public_url.clone();
        url.set_path(&format!("/oauth2/callback/{provider_id}"));
        url
    }

    /// `<public_url>/oauth2/signed_out`: where a provider's end-session
    /// endpoint sends the browser back (its post-logout redirect URI).
    pub fn post_logout_redirect_uri(&self) -> Url {
        let mut url = self.server.public_url.clone();
        url.set_path("/oauth2/signed_out");
        url
    }

    /// `<public_url>/oauth2/backchannel_logout/<provider id>`: the back-channel
    /// logout URI registered at the provider.
    pub fn backchannel_logout_uri(&self, provider_id: &str) -> Url {
        let mut url = self.server.public_url.clone();
        url.set_path(&format!("/oauth2/backchannel_logout/{provider_id}"));
        url
    }

    /// What the operator registers at each provider, as TOML comments.
    pub fn registration_notes(&self) -> String {
        let mut notes = String::from("\n# Register at each provider:\n");
        for p in &self.providers {
            notes.push_str(&format!(
                "# [providers.{id}]\n#   redirect URI:              {}\n#   post-logout redirect URI:  {}\n#   back-channel logout URI:   {}\n",
                self.redirect_uri(&p.id),
                self.post_logout_redirect_uri(),
                self.backchannel_logout_uri(&p.id),
                id = p.id,
            ));
        }
        notes
    }
}

/// A secret string: never printed, never serialised in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

fn ser_headers<S: Serializer>(h: &[(HeaderName, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(h.iter().map(|(k, v)| (k.as_str(), v)))
}

fn ser_opt_headers<S: Serializer>(
    h: &Option<Vec<(HeaderName, String)>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match h {
        Some(h) => ser_headers(h, s),
        None => s.serialize_none(),
    }
}

// === errors ===

/// Every problem found in a configuration, each as `key: what is wrong and how to fix it`.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

mod raw;
pub mod tls;
pub mod watch;

pub use self::tls::{CaBundle, ClientIdentity};

use raw::RawConfig;

// === loading ===

/// Reads `path` overlaid with `PORTCULLIS_*` variables. A missing file is an
/// error only when the operator named it (`--config`); otherwise the environment
/// alone may configure everything, as in a container.
pub fn load(path: &Path, named_by_operator: bool) -> Result<Config, ConfigError> {
    let mut figment = Figment::new();
    if path.exists() {
        figment = figment.merge(Toml::file_exact(path));
    } else if named_by_operator {
        return Err(ConfigError {
            problems: vec![format!(
                "--config {}: file not found; check the path (the repository's config.toml is the commented reference)",
                path.display()
            )],
        });
    }
    from_figment(figment.merge(environment()))
}

/// The `PORTCULLIS_*` variables that can name a key. Every key sits in a table,
/// so a variable without `__` never does; Kubernetes sets such variables for a
/// Service named `portcullis` (`PORTCULLIS_PORT`, `PORTCULLIS_SERVICE_HOST`, ...),
/// so they are skipped and named once at debug. A misspelt key with `__` is kept,
/// and refused by validation.
fn environment() -> Env {
    let prefixed = || Env::prefixed("PORTCULLIS_");
    let skipped: Vec<String> = prefixed()
        .filter(|key| !key.as_str().contains("__"))
        .iter()
        .map(|(key, _)| format!("PORTCULLIS_{}", key.as_str().to_ascii_uppercase()))
        .collect();
    if !skipped.is_empty() {
        tracing::debug!(
            variables = ?skipped,
            "ignoring PORTCULLIS_ variables without `__`: no configuration key is at the top level"
        );
    }
    prefixed()
        .filter(|key| key.as_str().contains("__"))
        .split("__")
}

/// Validates configuration from any figment (tests build one from a TOML string).
pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
    let raw: RawConfig = figment.extract().map_err(|err| ConfigError {
        problems: err.into_iter().map(describe_figment_error).collect(),
    })?;
    raw.validate()
}

fn describe_figment_error(e: figment::Error) -> String {
    let key = if e.path.is_empty() {
        "config".to_owned()
    } else {
        e.path.join(".")
    };
    let source = e
        .metadata
        .as_ref()
        .map(|m| format!(" (from {})", m.name))
        .unwrap_or_default();
    // figment's message quotes the value, and an all-digit secret given
    // through the environment arrives as a number: never echo a secret.
    if e.path
        .iter()
        .any(|part| SECRET_KEYS.contains(&part.as_str()))
    {
        return format!(
            "{key}: not a valid value (not shown: it is a secret); give it as a quoted string{source}"
        );
    }
    format!(
        "{key}: {}{source}",
        without_source_excerpt(&e.kind.to_string())
    )
}

/// A TOML syntax error quotes the offending line, which may be a secret
/// written without quotes: the position and the reason are enough.
fn without_source_excerpt(message: &str) -> String {
    let is_excerpt = |line: &str| {
        let gutter = line
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit());
        gutter.trim_start().starts_with('|')
    };
    message
        .lines()
        .filter(|line| !line.trim().is_empty() && !is_excerpt(line))
        .collect::<Vec<_>>()
        .join(": ")
}

/// Keys whose values are secrets (redis_url may carry a password).
const SECRET_KEYS: [&str; 4] = ["secret", "previous_secrets", "client_secret", "redis_url"];

/// A fresh session secret: 32 random bytes, base64url (what `portcullis secret` prints).
pub fn generate_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests;
