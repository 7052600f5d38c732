//! The configuration as written (serde types that mirror config.toml) and its
//! validation into [`Config`]: one function per section, every problem
//! collected with its dotted key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::redirect::AllowedHost;
use http::HeaderName;
use ipnet::IpNet;
use serde::Deserialize;
use url::Url;

use super::*;
use providers::{RawProvider, validate_providers};

mod providers;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    server: RawServer,
    /// Absent: the default upstream, unless `[[upstreams]]` are configured.
    upstream: Option<RawUpstream>,
    #[serde(default)]
    upstreams: Vec<RawUpstream>,
    #[serde(default)]
    session: RawSession,
    #[serde(default)]
    access: RawAccess,
    #[serde(default)]
    sign_in: RawSignIn,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    rules: Vec<RuleConfig>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    hooks: RawHooks,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    public_url: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    extra_ca_file: Option<PathBuf>,
    metrics_listen: Option<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    max_header_bytes: Option<usize>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    body_read_timeout: Option<String>,
    max_connections: Option<usize>,
    watch_config: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
    level: Option<String>,
    access: Option<bool>,
}

impl RawLog {
    fn validate(self, p: &mut Problems) -> LogConfig {
        let format = match self.format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                p.add(
                    "log.format",
                    format_args!("{other:?} is not a log format; write \"text\" or \"json\""),
                );
                LogFormat::Text
            }
        };
        let level = self.level.unwrap_or_else(|| "info".to_owned());
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
            p.add(
                "log.level",
                format_args!(
                    "{level:?} is not a log filter ({e}); write a level such as \"info\" or \"debug\", or directives such as \"info,portcullis=debug\""
                ),
            );
        }
        LogConfig {
            format,
            level,
            access: self.access.unwrap_or(true),
        }
    }
}

/// `[upstream]`, and each `[[upstreams]]` entry: one struct, so both take
/// the same keys with the same meaning and validation. `host`,
/// `path_prefix`, `rules` and `headers` belong to routes only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    host: Option<String>,
    path_prefix: Option<String>,
    rules: Option<Vec<RuleConfig>>,
    headers: Option<BTreeMap<String, String>>,
    url: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    pass_access_token: bool,
    #[serde(default)]
    pass_id_token: bool,
    /// Default true; an `Option` so that a missing `[upstream]` table defaults too.
    pass_authorization: Option<bool>,
    ca_file: Option<PathBuf>,
    tls_server_name: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    #[serde(default)]
    protocol: UpstreamProtocol,
    #[serde(default)]
    assertion: bool,
    assertion_audience: Option<String>,
    assertion_key_file: Option<PathBuf>,
    assertion_lifetime: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    #[serde(default)]
    previous_secrets: Vec<String>,
    previous_secrets_file: Option<PathBuf>,
    cookie_name: Option<String>,
    lifetime: Option<String>,
    idle_timeout: Option<String>,
    refresh_before: Option<String>,
    refresh_interval: Option<String>,
    secure: Option<toml::Value>,
    same_site: Option<SameSite>,
    domain: Option<String>,
    store: Option<SessionStoreKind>,
    redis_url: Option<String>,
    redis_url_file: Option<PathBuf>,
    #[serde(default)]
    redis_sentinels: Vec<String>,
    redis_master_name: Option<String>,
    redis_key_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    #[serde(default = "star")]
    allowed_email_domains: Vec<String>,
    #[serde(default)]
    allowed_emails: Vec<String>,
    allowed_emails_file: Option<PathBuf>,
    #[serde(default)]
    allowed_groups: Vec<String>,
    #[serde(default = "yes")]
    require_email_verified: bool,
    #[serde(default)]
    bearer_tokens: bool,
    introspection_cache: Option<String>,
    #[serde(default)]
    case_sensitive_paths: bool,
    #[serde(default)]
    allow_encoded_slashes: bool,
    #[serde(default)]
    allowed_redirect_domains: Vec<String>,
    #[serde(default)]
    skip_auth_preflight: bool,
}

impl Default for RawAccess {
    fn default() -> Self {
        Self {
            allowed_email_domains: star(),
            allowed_emails: vec![],
            allowed_emails_file: None,
            allowed_groups: vec![],
            require_email_verified: true,
            bearer_tokens: false,
            introspection_cache: None,
            case_sensitive_paths: false,
            allow_encoded_slashes: false,
            allowed_redirect_domains: vec![],
            skip_auth_preflight: false,
        }
    }
}

fn star() -> Vec<String> {
    vec!["*".to_owned()]
}
fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignIn {
    #[serde(default)]
    auto_redirect: bool,
    template: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    on_login: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    timeout: Option<String>,
    on_error: Option<String>,
    on_refresh: Option<bool>,
}

/// The default `[headers]` map (DESIGN §2).
pub const DEFAULT_HEADERS: [(&str, &str); 6] = [
    ("X-Forwarded-User", "sub"),
    ("X-Forwarded-Email", "email"),
    ("X-Forwarded-Preferred-Username", "preferred_username"),
    ("X-Forwarded-Name", "name"),
    ("X-Forwarded-Groups", "groups"),
    ("X-Forwarded-Provider", "provider"),
];

/// Collects problems while validating.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: &str, problem: impl fmt::Display) {
        self.0.push(format!("{key}: {problem}"));
    }

    fn duration(&mut self, key: &str, value: Option<&str>, default: &str) -> Duration {
        let value = value.unwrap_or(default);
        match humantime::parse_duration(value) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.add(key, "must be longer than zero");
                Duration::from_secs(1)
            }
            Err(e) => {
                self.add(
                    key,
                    format_args!(
                        "{value:?} is not a duration ({e}); write e.g. \"30s\", \"15m\" or \"12h\""
                    ),
                );
                Duration::from_secs(1)
            }
        }
    }

    fn url(&mut self, key: &str, value: Option<&str>, default: &str) -> Url {
        let value = value.unwrap_or(default);
        match Url::parse(value) {
            // Not echoed: the value holds a password.
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                self.add(
                    key,
                    "must not carry a user name or password: they would be logged, and are never sent",
                );
                Url::parse(default).expect("default URL parses")
            }
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
            Ok(_) => {
                self.add(
                    key,
                    format_args!("{value:?} must be an absolute http:// or https:// URL"),
                );
                Url::parse(default).expect("default URL parses")
            }
            // Not echoed when it may hold a password (`user:pass@` that did
            // not parse).
            Err(e) if value.contains('@') => {
                self.add(key, format_args!("is not a URL ({e})"));
                Url::parse(default).expect("default URL parses")
            }
            Err(e) => {
                self.add(key, format_args!("{value:?} is not a URL ({e})"));
                Url::parse(default).expect("default URL parses")
            }
        }
    }

    /// The PEM bundle at `path`, if given and readable.
    fn ca_bundle(&mut self, key: &str, path: Option<&Path>) -> Option<CaBundle> {
        CaBundle::read(path?).map_err(|e| self.add(key, e)).ok()
    }

    fn addr(&mut self, key: &str, value: &str) -> SocketAddr {
        value.parse().unwrap_or_else(|_| {
            self.add(
                key,
                format_args!(
                    "{value:?} is not an address; write host:port, e.g. \"127.0.0.1:4180\""
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    /// A secret given inline or as `<key>_file`, never both.
    fn secret(&mut self, key: &str, inline: Option<String>, file: Option<&Path>) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.add(
                    key,
                    format_args!("set either {key} or {key}_file, not both"),
                );
                None
            }
            (Some(v), None) => Some(Secret(v)),
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(v) => Some(Secret(v.trim_end_matches(['\r', '\n']).to_owned())),
                Err(e) => {
                    self.add(
                        &format!("{key}_file"),
                        format_args!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            },
            (None, None) => None,
        }
    }
}

/// `session.cookie_name` unless set (see the `__Host-` default).
const DEFAULT_COOKIE_NAME: &str = "_portcullis";

/// A secret must carry at least 32 bytes; `portcullis secret` makes one.
const MIN_SECRET_LEN: usize = 32;

impl RawConfig {
    pub(super) fn validate(self) -> Result<Config, ConfigError> {
        let mut p = Problems::default();
        let server = self.server.validate(&mut p);
        let upstream_enabled = self.upstream.is_some() || self.upstreams.is_empty();
        let upstream = self.upstream.unwrap_or_default().validate_default(&mut p);
        let upstreams = validate_routes(self.upstreams, upstream_enabled, &mut p);
        let session = self.session.validate(&mut p, &server.public_url);
        let access = self.access.validate(&mut p);
        validate_rules(&self.rules, "rules", &mut p);
        let headers = validate_headers(self.headers, "headers", &mut p);
        let sign_in = self.sign_in.validate(&mut p);
        let log = self.log.validate(&mut p);
        let providers = validate_providers(self.providers, &mut p);
        let login_hook = self.hooks.validate(&mut p);
        if !p.0.is_empty() {
            return Err(ConfigError { problems: p.0 });
        }
        Ok(Config {
            server,
            upstream,
            upstream_enabled,
            upstreams,
            session,
            access,
            sign_in,
            log,
            rules: self.rules,
            headers,
            providers,
            login_hook,
        })
    }
}

impl RawHooks {
    fn validate(self, p: &mut Problems) -> Option<LoginHookConfig> {
        let h = self;
        let Some(on_login) = h.on_login else {
            if h.secret.is_some()
                || h.secret_file.is_some()
                || h.timeout.is_some()
                || h.on_error.is_some()
                || h.on_refresh.is_some()
            {
                p.add(
                    "hooks",
                    "has settings but no on_login; set hooks.on_login to the hook's URL, or remove [hooks]",
                );
            }
            return None;
        };
        let on_login = match on_login.strip_prefix("unix:") {
            Some(path) if path.starts_with('/') => HookTarget::Unix(PathBuf::from(path)),
            Some(_) => {
                p.add(
                    "hooks.on_login",
                    format_args!("{on_login:?} must name an absolute socket path, e.g. \"unix:/run/app/hook.sock\""),
                );
                return None;
            }
            None => HookTarget::Http(p.url("hooks.on_login", Some(&on_login), "http://127.0.0.1/")),
        };
        let has_secret_file = h.secret_file.is_some();
        let secret = match p.secret("hooks.secret", h.secret, h.secret_file.as_deref()) {
            Some(s) if s.0.len() >= MIN_SECRET_LEN => s,
            Some(_) => {
                p.add("hooks.secret", format_args!("too short; use at least {MIN_SECRET_LEN} random bytes (`portcullis secret` prints one)"));
                Secret(String::new())
            }
            // An unreadable secret_file is already reported.
            None if has_secret_file => Secret(String::new()),
            None => {
                p.add("hooks.secret", "missing; hooks.on_login needs it (or hooks.secret_file) to sign its calls: set it to the output of `portcullis secret`, and give the app the same");
                Secret(String::new())
            }
        };
        let on_error = match h.on_error.as_deref() {
            None | Some("deny") => OnHookError::Deny,
            Some("allow") => OnHookError::Allow,
            Some(other) => {
                p.add(
                    "hooks.on_error",
                    format_args!("{other:?} is not a choice; write \"deny\" (the default: a failed hook refuses the sign-in) or \"allow\""),
                );
                OnHookError::Deny
            }
        };
        Some(LoginHookConfig {
            on_login,
            secret,
            timeout: p.duration("hooks.timeout", h.timeout.as_deref(), "5s"),
            on_error,
            on_refresh: h.on_refresh.unwrap_or(false),
        })
    }
}

impl RawServer {
    fn validate(self, p: &mut Problems) -> ServerConfig {
        let s = self;
        let listen = p.addr(
            "server.listen",
            s.listen.as_deref().unwrap_or("127.0.0.1:4180"),
        );
        let public_url = p.url(
            "server.public_url",
            s.public_url.as_deref(),
            "http://127.0.0.1:4180",
        );
        if public_url.query().is_some() || public_url.fragment().is_some() {
            p.add("server.public_url", "must not have a query or fragment");
        }
        // portcullis serves `/oauth2/*` and proxies everything else at the root
        // of its host; a path here would be half honoured (redirect URIs) and
        // half not (flow cookie path, page links, routing), so it is refused.
        if public_url.path() != "/" {
            p.add(
                "server.public_url",
                "must not have a path: portcullis answers at the root of its host (\"https://app.example.com\"); give it its own host name rather than a path prefix",
            );
        }
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            p.add(
                "server.tls_cert",
                "tls_cert and tls_key go together; set both or neither",
            );
        }
        let trusted_proxies = s
            .trusted_proxies
            .iter()
            .filter_map(|net| {
                net.parse::<IpNet>()
                    .or_else(|_| net.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        p.add(
                            "server.trusted_proxies",
                            format_args!(
                                "{net:?} is not an address or CIDR range, e.g. \"10.0.0.0/8\""
                            ),
                        )
                    })
                    .ok()
            })
            .collect();
        let max_header_bytes = s.max_header_bytes.unwrap_or(32 * 1024);
        if max_header_bytes < 8192 {
            p.add("server.max_header_bytes", "must be at least 8192");
        }
        let header_read_timeout = p.duration(
            "server.header_read_timeout",
            s.header_read_timeout.as_deref(),
            "30s",
        );
        let idle_timeout = p.duration("server.idle_timeout", s.idle_timeout.as_deref(), "120s");
        let body_read_timeout = p.duration(
            "server.body_read_timeout",
            s.body_read_timeout.as_deref(),
            "30s",
        );
        let max_connections = match s.max_connections {
            Some(0) => {
                p.add(
                    "server.max_connections",
                    "must be at least 1; leave it out for the default (derived from the open-file limit)",
                );
                1
            }
            Some(n) => n,
            None => default_max_connections(open_file_limit()),
        };

        let metrics_listen = s
            .metrics_listen
            .as_deref()
            .map(|addr| p.addr("server.metrics_listen", addr));
        if metrics_listen.is_some_and(|m| m == listen) {
            p.add(
                "server.metrics_listen",
                "must differ from server.listen: metrics have a listener of their own",
            );
        }
        ServerConfig {
            listen,
            public_url,
            tls_cert: s.tls_cert,
            tls_key: s.tls_key,
            metrics_listen,
            extra_ca_file: p.ca_bundle("server.extra_ca_file", s.extra_ca_file.as_deref()),
            trusted_proxies,
            max_header_bytes,
            header_read_timeout,
            idle_timeout,
            body_read_timeout,
            max_connections,
            watch_config: s.watch_config.unwrap_or(false),
        }
    }
}

/// `server.max_connections` when not set: 10,000, or fewer when the process
/// may not open enough files for them. Each proxied connection can hold two
/// descriptors (the client's and one to the upstream), and
/// [`RESERVED_FILES`] stay free for listeners, providers and files, so the cap
/// is reached before `accept` starts failing with "too many open files".
pub(super) fn default_max_connections(open_file_limit: Option<u64>) -> usize {
    const DEFAULT: usize = 10_000;
    match open_file_limit {
        Some(limit) => {
            let fit = limit.saturating_sub(RESERVED_FILES) / 2;
            usize::try_from(fit).unwrap_or(DEFAULT).clamp(1, DEFAULT)
        }
        None => DEFAULT,
    }
}

/// Descriptors kept free of client connections (see [`default_max_connections`]).
const RESERVED_FILES: u64 = 64;

/// The process's soft limit on open files (`ulimit -n`), where the system
/// says (Linux's /proc); `None` when unknown or unlimited.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl RawUpstream {
    /// `[upstream]`: the route-only keys are refused.
    fn validate_default(self, p: &mut Problems) -> UpstreamConfig {
        let route_only = [
            ("host", self.host.is_some()),
            ("path_prefix", self.path_prefix.is_some()),
            ("rules", self.rules.is_some()),
            ("headers", self.headers.is_some()),
        ];
        for (key, _) in route_only.iter().filter(|(_, set)| *set) {
            p.add(
                &format!("upstream.{key}"),
                "belongs to [[upstreams]] entries; [upstream] takes every request no [[upstreams]] entry matches, under the top-level [[rules]] and [headers]",
            );
        }
        self.validate(p, "upstream")
    }

    /// The keys shared by `[upstream]` and `[[upstreams]]`; `at` is the
    /// table's key (`upstream`, `upstreams[1]`).
    fn validate(self, p: &mut Problems, at: &str) -> UpstreamConfig {
        let u = self;
        let url = match u.url.as_deref() {
            None if at != "upstream" => {
                p.add(
                    &format!("{at}.url"),
                    "missing; the app's address, e.g. \"http://127.0.0.1:9000\"",
                );
                Url::parse("http://127.0.0.1:8080").expect("default URL parses")
            }
            url => p.url(&format!("{at}.url"), url, DEFAULT_UPSTREAM_URL),
        };
        let tls_only = [
            ("ca_file", u.ca_file.is_some()),
            ("tls_server_name", u.tls_server_name.is_some()),
            ("insecure_skip_verify", u.insecure_skip_verify),
            ("client_cert_file", u.client_cert_file.is_some()),
        ];
        if url.scheme() == "http" {
            for (key, _) in tls_only.iter().filter(|(_, set)| *set) {
                p.add(
                    &format!("{at}.{key}"),
                    format_args!(
                        "applies only to an https:// {at}.url; remove it or make the URL https://"
                    ),
                );
            }
        }
        match (u.protocol, url.scheme()) {
            (UpstreamProtocol::H2, "http") => p.add(
                &format!("{at}.protocol"),
                format_args!("\"h2\" is HTTP/2 over TLS and needs an https:// {at}.url; use \"h2c\" for HTTP/2 without TLS"),
            ),
            (UpstreamProtocol::H2c, "https") => p.add(
                &format!("{at}.protocol"),
                format_args!("\"h2c\" is HTTP/2 without TLS and needs an http:// {at}.url; use \"h2\" or \"auto\" for https"),
            ),
            _ => {}
        }
        if let Some(name) = &u.tls_server_name
            && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            p.add(
                &format!("{at}.tls_server_name"),
                format_args!("{name:?} is not a DNS name or IP address, e.g. \"app.internal\""),
            );
        }
        if u.insecure_skip_verify && u.ca_file.is_some() {
            p.add(
                &format!("{at}.ca_file"),
                "has no effect with insecure_skip_verify = true; remove one of them (prefer ca_file)",
            );
        }
        let client_cert = match (&u.client_cert_file, &u.client_key_file) {
            (Some(cert), Some(key)) => ClientIdentity::read(cert, key)
                .map_err(|(key, problem)| p.add(&format!("{at}.{key}"), problem))
                .ok(),
            (None, None) => None,
            _ => {
                p.add(
                    &format!("{at}.client_cert_file"),
                    "client_cert_file and client_key_file go together; set both or neither",
                );
                None
            }
        };
        let assertion = validate_assertion(&u, p, at);
        UpstreamConfig {
            url,
            timeout: p.duration(&format!("{at}.timeout"), u.timeout.as_deref(), "60s"),
            pass_access_token: u.pass_access_token,
            pass_id_token: u.pass_id_token,
            pass_authorization: u.pass_authorization.unwrap_or(true),
            ca_file: p.ca_bundle(&format!("{at}.ca_file"), u.ca_file.as_deref()),
            tls_server_name: u.tls_server_name,
            insecure_skip_verify: u.insecure_skip_verify,
            client_cert,
            protocol: u.protocol,
            assertion,
        }
    }
}

/// A route's `assertion_*` keys, which mean something only with `assertion = true`.
fn validate_assertion(u: &RawUpstream, p: &mut Problems, at: &str) -> Option<AssertionConfig> {
    if !u.assertion {
        let set = [
            ("assertion_audience", u.assertion_audience.is_some()),
            ("assertion_key_file", u.assertion_key_file.is_some()),
            ("assertion_lifetime", u.assertion_lifetime.is_some()),
        ];
        for (key, _) in set.iter().filter(|(_, set)| *set) {
            p.add(
                &format!("{at}.{key}"),
                format_args!(
                    "has no effect without {at}.assertion = true; set that, or remove {key}"
                ),
            );
        }
        return None;
    }
    // As written: what the app compares `aud` with.
    let audience = match (&u.assertion_audience, &u.url) {
        (Some(audience), _) => audience.clone(),
        (None, Some(url)) => url.clone(),
        (None, None) => DEFAULT_UPSTREAM_URL.to_owned(),
    };
    if audience.trim().is_empty() {
        p.add(
            &format!("{at}.assertion_audience"),
            "must not be empty; leave it out for the route's url, or name the app, e.g. \"https://wiki.example.com\"",
        );
    }
    let key = format!("{at}.assertion_lifetime");
    let lifetime = p.duration(&key, u.assertion_lifetime.as_deref(), "5m");
    if !crate::assertion::LIFETIMES.contains(&lifetime) {
        p.add(
            &key,
            "must be between 30s and 1h: long enough to reach the app, short enough that a copied assertion soon stops working; e.g. \"5m\"",
        );
    }
    let key_file = u.assertion_key_file.as_deref().and_then(|path| {
        let key = format!("{at}.assertion_key_file");
        let pem = std::fs::read_to_string(path)
            .map_err(|e| p.add(&key, format_args!("cannot read {}: {e}", path.display())))
            .ok()?;
        let signing = crate::assertion::SigningKey::from_pem(&pem)
            .map_err(|e| p.add(&key, format_args!("{} {e}", path.display())))
            .ok()?;
        Some(AssertionKeyFile {
            path: path.to_owned(),
            key: std::sync::Arc::new(signing),
        })
    });
    Some(AssertionConfig {
        audience,
        lifetime,
        key_file,
    })
}

/// `upstream.url` unless set.
const DEFAULT_UPSTREAM_URL: &str = "http://127.0.0.1:8080";

impl RawSession {
    /// `public_url` decides `secure = "auto"`.
    fn validate(self, p: &mut Problems, public_url: &Url) -> SessionConfig {
        let store = validate_store(p, &self);
        let ss = self;
        let has_secret_file = ss.secret_file.is_some();
        let secret = p.secret("session.secret", ss.secret, ss.secret_file.as_deref());
        let secret = match secret {
            Some(s) if s.0.len() >= MIN_SECRET_LEN => s,
            Some(_) => {
                p.add("session.secret", format_args!("too short; use at least {MIN_SECRET_LEN} random bytes (`portcullis secret` prints one)"));
                Secret(String::new())
            }
            // An unreadable secret_file is already reported.
            None if has_secret_file => Secret(String::new()),
            None => {
                p.add("session.secret", "missing; set it (or session.secret_file, or PORTCULLIS_SESSION__SECRET) to the output of `portcullis secret`");
                Secret(String::new())
            }
        };
        let mut previous_secrets: Vec<Secret> =
            ss.previous_secrets.into_iter().map(Secret).collect();
        if let Some(path) = ss.previous_secrets_file.as_deref() {
            match std::fs::read_to_string(path) {
                Ok(text) => previous_secrets.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(Secret::new),
                ),
                Err(e) => p.add(
                    "session.previous_secrets_file",
                    format_args!("cannot read {}: {e}", path.display()),
                ),
            }
        }
        if previous_secrets.iter().any(|s| s.0.len() < MIN_SECRET_LEN) {
            p.add(
                "session.previous_secrets",
                format_args!("every secret needs at least {MIN_SECRET_LEN} bytes"),
            );
        }
        // The default name, written out (as the reference config.toml does) or
        // not, may take the `__Host-` prefix below; any other is used as written.
        let named = ss
            .cookie_name
            .as_deref()
            .is_some_and(|name| name != DEFAULT_COOKIE_NAME);
        let mut cookie_name = ss
            .cookie_name
            .unwrap_or_else(|| DEFAULT_COOKIE_NAME.to_owned());
        if cookie_name.is_empty()
            || !cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            p.add(
                "session.cookie_name",
                "use only letters, digits, '_', '-' and '.'",
            );
        }
        let secure = match ss.secure {
            None => public_url.scheme() == "https",
            Some(toml::Value::String(s)) if s == "auto" => public_url.scheme() == "https",
            Some(toml::Value::Boolean(b)) => b,
            Some(toml::Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(other) => {
                p.add(
                    "session.secure",
                    format_args!("{other} is not one of \"auto\", true, false"),
                );
                true
            }
        };
        // RFC 6265bis §4.1.3: a prefixed name is a promise browsers enforce,
        // and a cookie that breaks it is dropped (so sign-in would loop).
        if cookie_name.starts_with("__Host-") && (!secure || ss.domain.is_some()) {
            p.add(
                "session.cookie_name",
                "a \"__Host-\" cookie needs secure cookies and no session.domain; remove session.domain (or the prefix), and use an https public_url or secure = true",
            );
        } else if cookie_name.starts_with("__Secure-") && !secure {
            p.add(
                "session.cookie_name",
                "a \"__Secure-\" cookie needs secure cookies; use an https public_url or secure = true, or drop the prefix",
            );
        }
        // The default name, on https, host-only: bound to this host with
        // `__Host-`, so a sibling subdomain can neither plant nor shadow the
        // session cookie.
        if !named && secure && ss.domain.is_none() && public_url.scheme() == "https" {
            cookie_name.insert_str(0, crate::session::cookies::HOST_PREFIX);
        }
        if let Some(domain) = &ss.domain {
            let host_chars = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
            if domain.trim_start_matches('.').is_empty() || !domain.bytes().all(host_chars) {
                p.add(
                    "session.domain",
                    format_args!("{domain:?} is not a domain name, e.g. \".example.com\""),
                );
            }
        }
        let same_site = ss.same_site.unwrap_or(SameSite::Lax);
        if same_site == SameSite::None && !secure {
            p.add(
                "session.same_site",
                "\"none\" needs secure cookies (an https public_url or secure = true)",
            );
        }
        SessionConfig {
            secret,
            previous_secrets,
            cookie_name,
            lifetime: p.duration("session.lifetime", ss.lifetime.as_deref(), "12h"),
            idle_timeout: ss
                .idle_timeout
                .as_deref()
                .map(|v| p.duration("session.idle_timeout", Some(v), v)),
            refresh_before: p.duration(
                "session.refresh_before",
                ss.refresh_before.as_deref(),
                "60s",
            ),
            refresh_interval: ss
                .refresh_interval
                .as_deref()
                .map(|v| p.duration("session.refresh_interval", Some(v), v)),
            secure,
            same_site,
            domain: ss.domain,
            store,
        }
    }
}

/// The default `session.redis_key_prefix`.
const DEFAULT_REDIS_KEY_PREFIX: &str = "portcullis:";

/// `session.store` and the `redis_*` keys. A `redis_*` key with the cookie
/// store is refused, not ignored: the operator meant to share sessions.
fn validate_store(p: &mut Problems, ss: &RawSession) -> StoreConfig {
    let url = p
        .secret(
            "session.redis_url",
            ss.redis_url.clone(),
            ss.redis_url_file.as_deref(),
        )
        .and_then(|url| redis_url(p, url));
    let redis_keys = [
        (ss.redis_url.is_some(), "redis_url"),
        (ss.redis_url_file.is_some(), "redis_url_file"),
        (!ss.redis_sentinels.is_empty(), "redis_sentinels"),
        (ss.redis_master_name.is_some(), "redis_master_name"),
        (ss.redis_key_prefix.is_some(), "redis_key_prefix"),
    ];
    if ss.store != Some(SessionStoreKind::Redis) {
        for (_, key) in redis_keys.iter().filter(|(set, _)| *set) {
            p.add(
                &format!("session.{key}"),
                "is only used with the Redis store; set session.store = \"redis\", or remove the key",
            );
        }
        return StoreConfig::Cookie;
    }
    for sentinel in &ss.redis_sentinels {
        let port = sentinel
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        let parts = matches!(port, Some((host, Ok(port))) if !host.is_empty() && port != 0);
        // As the store will name it: the client must take it.
        if !parts || redis::Client::open(format!("redis://{sentinel}")).is_err() {
            p.add(
                "session.redis_sentinels",
                format_args!("{sentinel:?} is not host:port, e.g. \"sentinel-1:26379\""),
            );
        }
    }
    match (ss.redis_sentinels.is_empty(), &ss.redis_master_name) {
        (false, None) => p.add(
            "session.redis_master_name",
            "missing: with redis_sentinels, name the master they watch (their `sentinel monitor` name, e.g. \"mymaster\")",
        ),
        (true, Some(_)) => p.add(
            "session.redis_sentinels",
            "missing: redis_master_name is only used with redis_sentinels; list the Sentinels (\"host:port\"), or remove redis_master_name",
        ),
        (true, None) if url.is_none() && ss.redis_url.is_none() && ss.redis_url_file.is_none() => p.add(
            "session.store",
            "\"redis\" needs session.redis_url (or redis_url_file, e.g. redis_url = \"redis://127.0.0.1:6379\"), or redis_sentinels with redis_master_name",
        ),
        _ => {}
    }
    let key_prefix = ss
        .redis_key_prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_REDIS_KEY_PREFIX.to_owned());
    if key_prefix.is_empty() || !key_prefix.bytes().all(|b| b.is_ascii_graphic()) {
        p.add(
            "session.redis_key_prefix",
            "must be printable ASCII without spaces, and not empty, e.g. \"portcullis:\"",
        );
    }
    StoreConfig::Redis(RedisConfig {
        url,
        sentinels: ss.redis_sentinels.clone(),
        master_name: ss.redis_master_name.clone(),
        key_prefix,
    })
}

/// A `redis://` or `rediss://` URL the Redis client accepts. The value is
/// never echoed: it may hold a password.
fn redis_url(p: &mut Problems, url: Secret) -> Option<RedisUrl> {
    const KEY: &str = "session.redis_url";
    const FORM: &str = "write redis://[[user]:password@]host[:port][/db], or rediss:// for TLS";
    let parsed = match Url::parse(url.expose()) {
        Ok(parsed) => parsed,
        Err(e) => {
            p.add(
                KEY,
                format_args!(
                    "is not a URL ({e}; the value is not shown: it may hold a password); {FORM}"
                ),
            );
            return None;
        }
    };
    if !matches!(parsed.scheme(), "redis" | "rediss") || parsed.host_str().is_none_or(str::is_empty)
    {
        p.add(
            KEY,
            format_args!("must start with redis:// or rediss:// and name a host; {FORM}"),
        );
        return None;
    }
    if parsed.fragment().is_some() {
        p.add(
            KEY,
            format_args!("must not end in a #fragment: #insecure (no TLS certificate check) is not supported; remove it ({FORM})"),
        );
        return None;
    }
    if let Err(e) = redis::Client::open(url.expose()) {
        p.add(
            KEY,
            format_args!("is refused by the Redis client ({e}); {FORM}"),
        );
        return None;
    }
    Some(RedisUrl::new(url))
}

impl RawAccess {
    fn validate(self, p: &mut Problems) -> AccessConfig {
        let a = self;
        AccessConfig {
            allowed_email_domains: a
                .allowed_email_domains
                .iter()
                .map(|d| d.trim().to_ascii_lowercase())
                .collect(),
            allowed_emails: a
                .allowed_emails
                .iter()
                .map(|e| e.trim().to_ascii_lowercase())
                .collect(),
            allowed_emails_file: a.allowed_emails_file,
            allowed_groups: a.allowed_groups,
            require_email_verified: a.require_email_verified,
            case_sensitive_paths: a.case_sensitive_paths,
            allow_encoded_slashes: a.allow_encoded_slashes,
            allowed_redirect_domains: a
                .allowed_redirect_domains
                .iter()
                .enumerate()
                .filter_map(|(i, written)| {
                    AllowedHost::parse(written)
                        .map_err(|why| {
                            p.add(
                                &format!("access.allowed_redirect_domains[{i}]"),
                                format_args!("{written:?} {why}"),
                            )
                        })
                        .ok()
                })
                .collect(),
            skip_auth_preflight: a.skip_auth_preflight,
            bearer_tokens: a.bearer_tokens,
            introspection_cache: p.duration(
                "access.introspection_cache",
                a.introspection_cache.as_deref(),
                "60s",
            ),
        }
    }
}

impl RawSignIn {
    fn validate(self, p: &mut Problems) -> SignInConfig {
        let template = self.template.as_deref().and_then(|path| {
            match std::fs::read_to_string(path) {
                Ok(text) if text.contains("{{providers}}") => Some(text),
                Ok(_) => {
                    p.add(
                        "sign_in.template",
                        format_args!(
                            "{} has no {{{{providers}}}} placeholder, so the page would offer no way to sign in",
                            path.display()
                        ),
                    );
                    None
                }
                Err(e) => {
                    p.add(
                        "sign_in.template",
                        format_args!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        });
        SignInConfig {
            auto_redirect: self.auto_redirect,
            template_path: self.template,
            template,
        }
    }
}

/// The `[[upstreams]]` entries. `upstream_enabled`: `[upstream]` takes what
/// they leave, so a route that takes everything makes it unreachable.
fn validate_routes(
    raw: Vec<RawUpstream>,
    upstream_enabled: bool,
    p: &mut Problems,
) -> Vec<RouteConfig> {
    use crate::routes::{HostPattern, PathPrefix};
    let mut routes: Vec<RouteConfig> = Vec::with_capacity(raw.len());
    // Whether each route's host and path_prefix are valid: an invalid one
    // stands in as "any", and would be reported as hiding the rest.
    let mut valid: Vec<bool> = Vec::with_capacity(raw.len());
    for (i, mut r) in raw.into_iter().enumerate() {
        let at = format!("upstreams[{i}]");
        let mut ok = true;
        let host = r.host.take().and_then(|h| {
            HostPattern::parse(&h)
                .map_err(|why| {
                    ok = false;
                    p.add(&format!("{at}.host"), format_args!("{h:?} {why}"))
                })
                .ok()
        });
        let path_prefix = match r.path_prefix.take() {
            None => PathPrefix::root(),
            Some(prefix) => PathPrefix::parse(&prefix).unwrap_or_else(|why| {
                ok = false;
                p.add(
                    &format!("{at}.path_prefix"),
                    format_args!("{prefix:?} {why}"),
                );
                PathPrefix::root()
            }),
        };
        let rules = r.rules.take();
        if let Some(rules) = &rules {
            validate_rules(rules, &format!("{at}.rules"), p);
        }
        let headers = r
            .headers
            .take()
            .map(|h| validate_headers(Some(h), &format!("{at}.headers"), p));
        let route = RouteConfig {
            host,
            path_prefix,
            upstream: r.validate(p, &at),
            rules,
            headers,
        };
        // Compared as written: paths are also compared case-folded, where
        // prefixes that differ only in case pick the earlier route anyway.
        if let Some(j) = routes.iter().zip(&valid).position(|(earlier, &valid)| {
            ok && valid
                && crate::routes::covers(
                    (earlier.host.as_ref(), &earlier.path_prefix),
                    (route.host.as_ref(), &route.path_prefix),
                )
        }) {
            p.add(
                &at,
                format_args!(
                    "is never used: upstreams[{j}] comes first and takes every request it would (same or wider host and path_prefix); remove it or move it above"
                ),
            );
        }
        routes.push(route);
        valid.push(ok);
    }
    if upstream_enabled
        && let Some(j) = routes
            .iter()
            .zip(&valid)
            .position(|(r, &valid)| valid && r.host.is_none() && r.path_prefix.is_root())
    {
        p.add(
            "upstream",
            format_args!(
                "is never used: upstreams[{j}] has no host and path_prefix \"/\", so it takes every request; remove [upstream], or give upstreams[{j}] a host or path_prefix"
            ),
        );
    }
    routes
}

/// `at`: the list's key (`rules`, `upstreams[1].rules`).
fn validate_rules(rules: &[RuleConfig], at: &str, p: &mut Problems) {
    for (i, rule) in rules.iter().enumerate() {
        if !rule.path.starts_with('/') {
            p.add(
                &format!("{at}[{i}].path"),
                format_args!("{:?} must start with '/'", rule.path),
            );
        }
        let key = |field: &str| format!("{at}[{i}].{field}");
        let who = [
            ("groups", !rule.groups.is_empty()),
            ("emails", !rule.emails.is_empty()),
            ("domains", !rule.domains.is_empty()),
            ("claims", !rule.claims.is_empty()),
        ];
        for (field, _) in who.iter().filter(|(_, set)| *set) {
            if rule.public {
                p.add(
                    &format!("{at}[{i}]"),
                    format_args!(
                        "a public rule cannot also require {field}; public admits everyone"
                    ),
                );
            }
        }
        if let Some(host) = &rule.host
            && let Err(why) = crate::routes::HostPattern::parse(host)
        {
            p.add(&key("host"), format_args!("{host:?} {why}"));
        }
        for email in &rule.emails {
            if email.trim().matches('@').count() != 1
                || email.trim().starts_with('@')
                || email.trim().ends_with('@')
            {
                p.add(
                    &key("emails"),
                    format_args!("{email:?} is not an email address (exactly one '@')"),
                );
            }
        }
        for domain in &rule.domains {
            let d = domain.trim();
            let name = d.strip_prefix('.').unwrap_or(d);
            if d == "*" {
                p.add(
                    &key("domains"),
                    "\"*\" admits every domain; leave domains out instead",
                );
            } else if name.is_empty()
                || name.contains(['@', '/', ':', '*', ' '])
                || name.starts_with('.')
                || name.ends_with('.')
                || name.split('.').any(str::is_empty)
            {
                p.add(
                    &key("domains"),
                    format_args!("{domain:?} is not a domain: write \"example.com\", or \".example.com\" for its subdomains"),
                );
            }
        }
        for (path, values) in &rule.claims {
            if !crate::identity::claim_path::is_valid(path) {
                p.add(
                    &key(&format!("claims.{path}")),
                    "is not a claim path; write claim names joined by '.', e.g. \"realm_access.roles\"",
                );
            } else if values.is_empty() {
                p.add(
                    &key(&format!("claims.{path}")),
                    "lists no values, so no one could match; list the accepted values",
                );
            }
        }
        if rule.skip_preflight
            && !rule.methods.is_empty()
            && !rule.methods.iter().any(|m| m == "OPTIONS")
        {
            p.add(
                &key("skip_preflight"),
                "never applies: the rule's methods leave out OPTIONS, the preflight's method; add \"OPTIONS\" or remove methods",
            );
        }
        if rule.skip_preflight && rule.public {
            p.add(
                &key("skip_preflight"),
                "a public rule already lets preflights through; remove one",
            );
        }
        for m in &rule.methods {
            if http::Method::from_bytes(m.as_bytes()).is_err()
                || m.chars().any(|c| c.is_ascii_lowercase())
            {
                p.add(
                    &format!("{at}[{i}].methods"),
                    format_args!("{m:?} is not an upper-case HTTP method"),
                );
            }
        }
    }
}

/// Besides [`crate::headers::FORWARDING_HEADERS`], names an identity-header
/// map may not use: those that frame the request.
const FRAMING_HEADERS: &[&str] = &[
    "host",
    "cookie",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// The configured `[headers]` map, or the default one; `at` is its key
/// (`headers`, `upstreams[1].headers`).
fn validate_headers(
    headers: Option<BTreeMap<String, String>>,
    at: &str,
    p: &mut Problems,
) -> Vec<(HeaderName, String)> {
    let header_map: Vec<(String, String)> = match headers {
        Some(map) => map.into_iter().collect(),
        None => DEFAULT_HEADERS
            .iter()
            .map(|(h, c)| (h.to_string(), c.to_string()))
            .collect(),
    };
    let mut headers: Vec<(HeaderName, String)> = Vec::with_capacity(header_map.len());
    for (name, claim) in header_map {
        match HeaderName::from_bytes(name.as_bytes()) {
            // Header names are case-insensitive: `X-User` and `x-user` are one
            // header, and only one of the two claims could be sent.
            Ok(h) if headers.iter().any(|(seen, _)| *seen == h) => p.add(
                &format!("{at}.{name}"),
                "names the same header as another entry (names ignore case); keep one",
            ),
            // portcullis writes these itself, or they frame the request.
            Ok(h)
                if crate::headers::FORWARDING_HEADERS.contains(&h.as_str())
                    || FRAMING_HEADERS.contains(&h.as_str()) =>
            {
                p.add(
                    &format!("{at}.{name}"),
                    "is a header portcullis sets or removes itself; choose another name",
                );
            }
            Ok(h) => headers.push((h, claim)),
            Err(_) => p.add(&format!("{at}.{name}"), "is not a valid header name"),
        }
    }
    headers
}
