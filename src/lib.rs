//! portcullis: an authentication sidecar. A reverse proxy that signs users in with
//! OpenID Connect and hands their identity to the upstream app in trusted headers.
//!
//! The modules mirror the request flow (DESIGN.md §1, §7): `server` accepts and
//! dispatches, `auth` serves `/oauth2/*`, `proxy` runs the phases for everything
//! else and `upstream` streams to the app. `respond` is the one place where an
//! error becomes a status and a page.

pub mod assertion;
pub mod auth;
pub mod authn;
pub mod config;
pub mod demo;
#[cfg(test)]
mod fuzz;
pub mod head_limit;
pub mod headers;
pub mod identity;
pub mod log;
pub mod login_hook;
pub mod metrics;
pub mod pages;
pub mod policy;
pub mod provider;
pub mod proxy;
pub mod redirect;
pub mod reload;
pub mod respond;
pub mod routes;
pub mod server;
pub mod session;
pub mod upstream;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type on both sides of the proxy: streamed bodies from hyper,
/// and small bodies portcullis makes itself.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A body holding `bytes` whole (portcullis' own pages and JSON).
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// `error: cause: cause`: hyper's errors print only their kind, and the
/// operator needs the cause (refused, DNS, certificate…).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

/// Seconds since the Unix epoch: the clock of sessions, flows and tokens.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// === the application ===

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;

use crate::config::Config;
use crate::headers::SpoofGuard;
use crate::metrics::{Metrics, Outcome, SignInResult};
use crate::provider::Providers;
use crate::routes::Routes;
use crate::server::{ConnInfo, Handler, ServerLimits};
use crate::session::{Opened, Sessions};

/// Why portcullis could not start; each names the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}; is another process using it? Change server.listen")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(#[from] server::TlsError),
    #[error("{0}")]
    Access(std::io::Error),
    #[error("cannot set up TLS for calls to identity providers: {0}")]
    ProviderTls(rustls::Error),
    #[error("cannot set up TLS for calls to the login hook: {0}")]
    HookTls(rustls::Error),
    #[error("{0}")]
    SessionStore(session::redis::SetupError),
    #[error("demo: {0}")]
    Demo(std::io::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error(
        "cannot listen on {addr}: {source}; is another process using it? Change server.metrics_listen"
    )]
    BindMetrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Everything a request needs: one configuration's snapshot (DESIGN §10
/// "Reloadable state"). A reload builds a new `App` with [`App::reloaded`],
/// which keeps what must outlive a configuration (see there), and [`Live`]
/// hands each request the newest one.
pub struct App {
    pub config: Config,
    pub sessions: Arc<Sessions>,
    pub providers: Providers,
    /// The apps behind portcullis, each with its upstream, rules and headers.
    pub routes: Routes,
    /// One token refresh per session at a time, and the backoff after failures.
    pub refresher: Arc<authn::refresh::Refresher>,
    /// Back-channel logout tokens already acted on.
    pub seen_logout_tokens: Arc<auth::SeenLogoutTokens>,
    /// Verdicts on bearer tokens seen lately (`[access] bearer_tokens`); new
    /// with each configuration, as they depend on its providers and claims.
    pub bearer: authn::bearer::BearerCache,
    /// `[hooks] on_login`, when set: new with each configuration.
    pub login_hook: Option<login_hook::LoginHook>,
    pub metrics: Arc<Metrics>,
    spoof_guard: SpoofGuard,
    /// This configuration's own background work (the emails file watch),
    /// stopped when the last request using it is done.
    _emails_watch: Option<tokio_util::task::AbortOnDropHandle<()>>,
}

/// What handling a request tells the top of [`App::handle`], which turns it
/// into the request's metric counts and access-log line (DESIGN §10).
#[derive(Default)]
pub struct RequestContext<'a> {
    /// Set where it is decided; otherwise read from the response's status.
    pub outcome: Option<Outcome>,
    /// From sending the request upstream to its response head.
    pub upstream_time: Option<Duration>,
    /// The signed-in user the request was judged as.
    pub session: Option<Arc<Opened>>,
    /// A callback's provider and how the sign-in ended.
    pub sign_in: Option<(&'a str, SignInResult)>,
}

impl App {
    /// Builds the app and starts provider discovery in the background; needs a
    /// Tokio runtime.
    pub fn new(config: Config) -> Result<Arc<Self>, StartError> {
        Self::build(config, None)
    }

    /// The app for `config`, replacing this one (hot reload). Kept from this
    /// one: the metrics, the refresh flights, the seen logout tokens, the
    /// revocation list, the tunnels (so shutdown still waits for them), the
    /// providers whose settings did not change (with their metadata and
    /// keys), and the session store and upstream clients when their settings
    /// did not change (with their caches and pooled connections).
    pub fn reloaded(&self, config: Config) -> Result<Arc<Self>, StartError> {
        Self::build(config, Some(self))
    }

    fn build(config: Config, previous: Option<&App>) -> Result<Arc<Self>, StartError> {
        let tunnels = previous.map_or_else(Default::default, |p| p.routes.tunnels());
        let routes = Routes::new(&config, tunnels, previous.map(|p| &p.routes))
            .map_err(StartError::Access)?;
        let emails_watch = routes
            .watch_emails_file()
            .map(tokio_util::task::AbortOnDropHandle::new);
        // With bearer tokens, the client's `Authorization` is read first and
        // then removed by the proxy wherever portcullis writes its own.
        let spoof_guard = SpoofGuard::new(
            routes
                .protected_headers()
                .into_iter()
                .filter(|name| !(config.access.bearer_tokens && *name == "authorization")),
        );
        let metrics = match previous {
            Some(p) => p.metrics.clone(),
            None => Arc::new(Metrics::new(routes.tunnels())),
        };
        let sessions = match previous {
            // Cached sessions carry the headers (and assertions) made under
            // the old maps (and keys).
            Some(p)
                if p.config.session == config.session
                    && p.routes.header_sets() == routes.header_sets() =>
            {
                p.sessions.clone()
            }
            _ => {
                let sessions = Sessions::new(&config.session)
                    .map_err(StartError::SessionStore)?
                    .counting(metrics.opened.clone());
                Arc::new(match previous {
                    Some(p) => sessions.keeping_revocations(&p.sessions),
                    None => sessions,
                })
            }
        };
        let providers = Providers::start_keeping(
            &config,
            metrics.provider.clone(),
            previous.map(|p| &p.providers),
        )
        .map_err(StartError::ProviderTls)?;
        let login_hook = config
            .login_hook
            .as_ref()
            .map(|hook| login_hook::LoginHook::new(hook, config.server.extra_ca_file.as_ref()))
            .transpose()
            .map_err(StartError::HookTls)?;
        Ok(Arc::new(Self {
            sessions,
            providers,
            routes,
            refresher: previous.map(|p| p.refresher.clone()).unwrap_or_default(),
            seen_logout_tokens: previous
                .map(|p| p.seen_logout_tokens.clone())
                .unwrap_or_default(),
            bearer: Default::default(),
            login_hook,
            metrics,
            spoof_guard,
            _emails_watch: emails_watch,
            config,
        }))
    }

    /// Serves on `listener` until `shutdown` resolves, then drains.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), StartError> {
        Live::new(self)?.serve(listener, shutdown).await
    }
}

/// The app requests are handed: the newest configuration's [`App`], which a
/// reload replaces at once for the next request while requests in flight
/// finish with the one they started with; and the server's certificate.
pub struct Live {
    app: arc_swap::ArcSwap<App>,
    certificate: Option<Arc<server::ServerCertificate>>,
}

impl Live {
    pub fn new(app: Arc<App>) -> Result<Arc<Self>, StartError> {
        let s = &app.config.server;
        let certificate = match (&s.tls_cert, &s.tls_key) {
            (Some(cert), Some(key)) => Some(server::ServerCertificate::load(cert, key)?),
            _ => None,
        };
        Ok(Arc::new(Self {
            app: arc_swap::ArcSwap::new(app),
            certificate,
        }))
    }

    /// The current configuration's app.
    pub fn app(&self) -> Arc<App> {
        self.app.load_full()
    }

    /// Makes `app` the one new requests get, with the certificate and key its
    /// configuration names read again; on an error nothing changes.
    pub fn replace(&self, app: Arc<App>) -> Result<(), StartError> {
        let s = &app.config.server;
        if let (Some(certificate), Some(cert), Some(key)) =
            (&self.certificate, &s.tls_cert, &s.tls_key)
        {
            certificate.reload(cert, key)?;
        }
        self.app.store(app);
        Ok(())
    }

    /// Serves on `listener` until `shutdown` resolves, then drains.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), StartError> {
        let app = self.app();
        let s = &app.config.server;
        let limits = ServerLimits {
            // `server.max_header_bytes` itself is enforced in `handle`.
            max_header_bytes: head_limit::hard_cap(s.max_header_bytes),
            header_read_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
            keep_alive_interval: server::KEEP_ALIVE_INTERVAL,
            keep_alive_timeout: server::KEEP_ALIVE_TIMEOUT,
            max_connections: s.max_connections,
        };
        let tls = self.certificate.as_ref().map(|c| c.server_config());
        let tunnels = app.routes.tunnels();
        drop(app);
        server::serve(listener, tls, limits, self, tunnels, shutdown)
            .await
            .map_err(StartError::Serve)
    }
}

impl Handler for Live {
    /// The current app's future itself, not one wrapping it: a wrapper
    /// would hold it as a field, and every poll path would move the bigger
    /// future (about 500 instructions of copying a request).
    fn handle(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        self.app().handle(req, conn)
    }

    fn open_connections(&self) -> Option<prometheus_client::metrics::gauge::Gauge> {
        Some(self.app().metrics.connections.clone())
    }
}

impl App {
    /// Answers one request, then counts and logs it.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let started = Instant::now();
        let access_logged = self.config.log.access && log::access::enabled();
        // Only for the log line: the method (inline when standard) and the
        // URI, whose parts share the request head's bytes.
        let logged = access_logged.then(|| (req.method().clone(), req.uri().clone()));
        let client = conn.peer.ip();
        let mut ctx = RequestContext::default();
        let response = self.dispatch(req, conn, &mut ctx).await;

        let outcome = ctx
            .outcome
            .unwrap_or_else(|| Outcome::of_status(response.status()));
        self.metrics.request(outcome);
        if let Some(took) = ctx.upstream_time {
            self.metrics.upstream_response(took);
        }
        if let Some((provider, result)) = ctx.sign_in {
            self.metrics.sign_in(provider, result);
        }
        if let Some((method, uri)) = logged {
            let identity = ctx.session.as_ref().map(|opened| &opened.session);
            let bytes = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            log::access::write(&log::access::Line {
                method: &method,
                path: uri.path(),
                status: response.status().as_u16(),
                outcome: outcome.label(),
                user: identity.map(|s| s.identity.sub.as_str()),
                provider: identity
                    .map(|s| s.provider.as_str())
                    .or(ctx.sign_in.map(|(p, _)| p)),
                duration: started.elapsed(),
                upstream: ctx.upstream_time,
                bytes,
                client,
            });
        }
        response
    }
}

impl App {
    async fn dispatch<'a>(
        &'a self,
        mut req: Request<Incoming>,
        conn: ConnInfo,
        ctx: &mut RequestContext<'a>,
    ) -> Response<Body> {
        if let Some(refused) = head_limit::refuse_oversized(self, &req) {
            return refused;
        }
        // DESIGN §8.3: on every path, before anything reads them.
        self.spoof_guard.strip(req.headers_mut());
        if req.uri().path().starts_with("/oauth2/") {
            auth::handle(self, req, conn, ctx).await
        } else {
            proxy::handle(self, req, conn, ctx).await
        }
    }
}

/// `portcullis run`: bind, serve, reload on SIGHUP (and file changes when
/// `server.watch_config`), stop on Ctrl-C or SIGTERM. `source` is where
/// `config` came from, read again on reload.
pub async fn run(config: Config, source: reload::ConfigSource) -> Result<(), StartError> {
    let addr = config.server.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let upstream = config
        .upstream_enabled
        .then_some(config.upstream.url.as_str());
    tracing::info!(%addr, public_url = %config.server.public_url, upstream, routes = config.upstreams.len(), "portcullis listening");
    let metrics_listener = match config.server.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::BindMetrics { addr, source })?;
            tracing::info!(%addr, "metrics at /metrics");
            Some(listener)
        }
        None => None,
    };
    let live = Live::new(App::new(config)?)?;
    if let Some(listener) = metrics_listener {
        tokio::spawn(metrics::serve(live.app().metrics.clone(), listener));
    }
    tokio::spawn(reload::follow(live.clone(), source));
    let served = live.serve(listener, shutdown_signal()).await;
    // The access-log lines still queued for stderr.
    log::access::flush();
    served
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` sends).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Logs to stderr as `[log]` says (`RUST_LOG` overrides its level), and
/// installs the rustls crypto provider: see [`log::init`].
pub fn init_tracing(config: &config::LogConfig) {
    log::init(config);
}
