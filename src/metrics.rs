//! Prometheus metrics, served on `server.metrics_listen` (README "Metrics").
//!
//! Every label set is fixed and registered up front, so counting on the
//! request path is an index and an atomic add: prometheus-client's `Family`
//! looks its label set up under a lock, and its `Histogram` takes a mutex per
//! observation. Only sign-ins, labelled by configured provider, use a `Family`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

/// How a request ended, one per request (DESIGN §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent to the upstream, whatever it answered.
    Proxied,
    /// A browser sent to sign in.
    SignIn,
    /// `401`: not signed in (an API client, or forward-auth).
    Unauthenticated,
    /// `403`: signed in but not allowed.
    Forbidden,
    /// Any other `4xx` portcullis answered itself (bad path, bad callback...).
    Refused,
    /// `502`: the upstream could not be reached or answered nothing usable.
    UpstreamError,
    /// `504`: the upstream sent no response head in time.
    UpstreamTimeout,
    /// One of portcullis' own endpoints answered (`/oauth2/*`, `2xx`/`3xx`).
    Endpoint,
    /// Any other `5xx` portcullis answered itself (provider, session store).
    Failed,
}

impl Outcome {
    const ALL: [Self; 9] = [
        Self::Proxied,
        Self::SignIn,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::Refused,
        Self::UpstreamError,
        Self::UpstreamTimeout,
        Self::Endpoint,
        Self::Failed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Proxied => "proxied",
            Self::SignIn => "sign_in",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::Refused => "refused",
            Self::UpstreamError => "upstream_error",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::Endpoint => "endpoint",
            Self::Failed => "failed",
        }
    }

    /// The outcome of an answer portcullis made itself, by its status.
    pub fn of_status(status: http::StatusCode) -> Self {
        match status.as_u16() {
            401 => Self::Unauthenticated,
            403 => Self::Forbidden,
            400..=499 => Self::Refused,
            500..=599 => Self::Failed,
            _ => Self::Endpoint,
        }
    }
}

/// How a sign-in (a callback) ended. The variant names are the label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum SignInResult {
    /// A new session.
    signed_in,
    /// The callback does not match a flow started here (state, expiry, replay).
    invalid_callback,
    /// The provider said no (`error=` on the callback, or a refused code).
    provider_refused,
    /// The provider failed, or its answer did not verify.
    provider_error,
    /// The access policy refused the user.
    denied,
    /// The session could not be stored.
    store_error,
    /// The login hook failed, and `hooks.on_error = "deny"`.
    hook_error,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SignInLabels {
    provider: String,
    result: SignInResult,
}

/// What a token refresh made of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshResult {
    Renewed,
    /// The provider could not be reached: the session goes on with old tokens.
    Kept,
    Ended,
}

/// What the login hook answered (`portcullis_login_hook_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookResult {
    Allowed,
    Denied,
    /// No answer, or one that is not an answer.
    Error,
}

/// Where a request's session came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenedFrom {
    /// The opened-session cache: no decryption.
    Cache,
    /// Decrypted (and parsed) from its cookie.
    Decrypted,
}

/// A call portcullis makes to an identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderCall {
    Token,
    Userinfo,
    Jwks,
    Discovery,
    Revocation,
    Introspection,
}

/// What became of a bearer token (`Authorization: Bearer`) a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerResult {
    /// A JWT verified against the provider's keys (or found in the cache).
    Accepted,
    /// An opaque token the provider's introspection said is active (or the cache did).
    Introspected,
    /// Refused: `401 invalid_token`.
    Invalid,
    /// The provider could not answer (introspection down, keys not loaded): `503`.
    Unavailable,
}

/// Counters (or timings) with one fixed label value each, in the order of
/// their enum: registered once, counted by index.
#[derive(Debug, Clone)]
pub struct Labelled<M, const N: usize> {
    label: &'static str,
    metrics: Arc<[(&'static str, M); N]>,
}

impl<M: Default, const N: usize> Labelled<M, N> {
    fn new(label: &'static str, values: [&'static str; N]) -> Self {
        Self {
            label,
            metrics: Arc::new(values.map(|value| (value, M::default()))),
        }
    }

    fn get(&self, index: usize) -> &M {
        &self.metrics[index].1
    }
}

impl<M: EncodeMetric + TypedMetric, const N: usize> EncodeMetric for Labelled<M, N> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (value, metric) in self.metrics.iter() {
            metric.encode(encoder.encode_family(&[(self.label, *value)])?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

/// Upper bounds, in seconds, of the timing buckets: 1 ms to 30 s.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// A histogram of durations in atomics (no lock): a count per bucket and the
/// sum in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Timing(Arc<TimingCells>);

#[derive(Debug, Default)]
struct TimingCells {
    /// Per bucket, not cumulative; the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Timing {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.0.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.0.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

impl TypedMetric for Timing {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Timing {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut count = 0;
        let mut buckets = [(0.0, 0); BUCKETS.len() + 1];
        for (i, cell) in self.0.buckets.iter().enumerate() {
            let n = cell.load(Ordering::Relaxed);
            count += n;
            buckets[i] = (BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), n);
        }
        let sum = self.0.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        encoder
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Every metric portcullis keeps, and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    requests: Labelled<Counter, 9>,
    upstream_response: Timing,
    sign_ins: Family<SignInLabels, Counter>,
    refreshes: Labelled<Counter, 3>,
    login_hook: Labelled<Counter, 3>,
    reloads: Labelled<Counter, 2>,
    bearer_tokens: Labelled<Counter, 4>,
    pub opened: OpenedCount,
    pub provider: ProviderMetrics,
    pub connections: Gauge,
}

/// Tasks open in a tracker, read when scraped: the upgraded connections
/// (tunnels), which `upstream` already tracks for shutdown.
#[derive(Debug)]
struct OpenTasks(TaskTracker);

impl TypedMetric for OpenTasks {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for OpenTasks {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&i64::try_from(self.0.len()).unwrap_or(i64::MAX))
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Sessions opened from the cache or by decryption (`session/cookies.rs`).
#[derive(Debug, Clone)]
pub struct OpenedCount(Labelled<Counter, 2>);

impl OpenedCount {
    pub fn count(&self, opened: OpenedFrom) {
        self.0.get(opened as usize).inc();
    }
}

impl Default for OpenedCount {
    /// Counts for nothing: for session stores built outside an `App` (tests).
    fn default() -> Self {
        Self(Labelled::new("from", ["cache", "cookie"]))
    }
}

/// What the providers record: call times and metadata fetches.
#[derive(Debug, Clone)]
pub struct ProviderMetrics {
    calls: Labelled<Timing, 6>,
    fetches: Labelled<Counter, 2>,
}

impl Default for ProviderMetrics {
    /// Records for nothing: for providers built outside an `App` (tests).
    fn default() -> Self {
        Self {
            calls: Labelled::new(
                "endpoint",
                [
                    "token",
                    "userinfo",
                    "jwks",
                    "discovery",
                    "revocation",
                    "introspection",
                ],
            ),
            fetches: Labelled::new("document", ["jwks", "discovery"]),
        }
    }
}

impl ProviderMetrics {
    /// Times `call`, made to `endpoint`; a JWKS or discovery fetch is also counted.
    pub async fn time<T>(&self, endpoint: ProviderCall, call: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let answer = call.await;
        self.calls.get(endpoint as usize).observe(started.elapsed());
        match endpoint {
            ProviderCall::Jwks => self.fetches.get(0).inc(),
            ProviderCall::Discovery => self.fetches.get(1).inc(),
            _ => 0,
        };
        answer
    }
}

impl Metrics {
    /// `tunnels`: the upgraded connections, counted when scraped.
    pub fn new(tunnels: TaskTracker) -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Labelled::new("outcome", Outcome::ALL.map(Outcome::label));
        registry.register("requests", "Requests by how they ended", requests.clone());
        let upstream_response = Timing::default();
        registry.register(
            "upstream_response_seconds",
            "Time from sending a request upstream to its response head",
            upstream_response.clone(),
        );
        let sign_ins = Family::default();
        registry.register(
            "sign_ins",
            "Sign-ins (callbacks) by provider and result",
            sign_ins.clone(),
        );
        let refreshes = Labelled::new("result", ["renewed", "kept", "ended"]);
        registry.register("refreshes", "Token refreshes by result", refreshes.clone());
        let login_hook = Labelled::new("result", ["allowed", "denied", "error"]);
        registry.register(
            "login_hook",
            "Calls to the login hook ([hooks] on_login) by answer",
            login_hook.clone(),
        );
        let reloads = Labelled::new("result", ["applied", "refused"]);
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP, server.watch_config) by result",
            reloads.clone(),
        );
        let bearer_tokens = Labelled::new(
            "result",
            ["accepted", "introspected", "invalid", "unavailable"],
        );
        registry.register(
            "bearer_tokens",
            "Bearer tokens presented in place of a session, by result",
            bearer_tokens.clone(),
        );
        let opened = OpenedCount::default();
        registry.register(
            "sessions_opened",
            "Sessions read from a request, from the cache or decrypted from the cookie",
            opened.0.clone(),
        );
        let provider = ProviderMetrics::default();
        registry.register(
            "provider_request_seconds",
            "Time of calls to identity providers by endpoint",
            provider.calls.clone(),
        );
        registry.register(
            "provider_metadata_fetches",
            "JWKS and discovery documents fetched from identity providers",
            provider.fetches.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open",
            connections.clone(),
        );
        registry.register(
            "open_tunnels",
            "Upgraded connections (WebSocket...) open",
            OpenTasks(tunnels),
        );
        registry.register(
            "build",
            "portcullis' version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        Self {
            registry,
            requests,
            upstream_response,
            sign_ins,
            refreshes,
            login_hook,
            reloads,
            bearer_tokens,
            opened,
            provider,
            connections,
        }
    }

    pub fn request(&self, outcome: Outcome) {
        self.requests.get(outcome as usize).inc();
    }

    pub fn upstream_response(&self, took: Duration) {
        self.upstream_response.observe(took);
    }

    pub fn sign_in(&self, provider: &str, result: SignInResult) {
        self.sign_ins
            .get_or_create(&SignInLabels {
                provider: provider.to_owned(),
                result,
            })
            .inc();
    }

    pub fn refresh(&self, result: RefreshResult) {
        self.refreshes.get(result as usize).inc();
    }

    pub fn login_hook(&self, result: HookResult) {
        self.login_hook.get(result as usize).inc();
    }

    pub fn bearer_token(&self, result: BearerResult) {
        self.bearer_tokens.get(result as usize).inc();
    }

    /// A configuration reload: applied, or refused (the old one kept serving).
    pub fn reload(&self, applied: bool) {
        self.reloads.get(usize::from(!applied)).inc();
    }

    /// The Prometheus text exposition format (0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// Serves `GET /metrics` on `listener` (HTTP/1.1) for as long as the process runs.
pub async fn serve(metrics: Arc<Metrics>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics: accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = scrape(&metrics, &req);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(SCRAPE_HEAD_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A scraper that has not sent its request head by then is disconnected.
const SCRAPE_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /metrics` (or HEAD) is the text format; anything else is `404`.
fn scrape<B>(metrics: &Metrics, req: &http::Request<B>) -> http::Response<crate::Body> {
    let readable = req.method() == http::Method::GET || req.method() == http::Method::HEAD;
    if !readable || req.uri().path() != "/metrics" {
        return crate::respond::text(http::StatusCode::NOT_FOUND, "not found");
    }
    let mut response = http::Response::new(crate::full(metrics.encode()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests;
