//! Forwarding to the app: a pool of HTTP/1.1 connections, bodies streamed
//! both ways, hop-by-hop headers removed, upgrades tunnelled (STYLE §8).

mod multiplexed;
mod pool;
mod tls;
mod tunnel;

use std::sync::Arc;
use std::time::Duration;

use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use self::multiplexed::Multiplexed;
use self::pool::{Pool, SendError};

use crate::config::{UpstreamConfig, UpstreamProtocol};
use crate::{Body, BoxError, error_chain, headers};

/// Connecting gets this long at most, so a black-holed upstream is reported as
/// unreachable rather than as slow (when `upstream.timeout` is longer).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable: {0}")]
    Unreachable(#[source] BoxError),
    /// The TLS handshake failed: rustls' reason, for the operator to fix
    /// `upstream.ca_file`, `tls_server_name` or the client certificate.
    #[error("upstream TLS handshake failed: {0}")]
    Tls(rustls::Error),
    #[error("upstream sent no response headers within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("upstream protocol error: {0}")]
    Protocol(#[source] BoxError),
    /// The request cannot be sent on as an origin-form request (`CONNECT`,
    /// `OPTIONS *`): the client's mistake, not the upstream's.
    #[error("request target cannot be forwarded: {0}")]
    InvalidTarget(&'static str),
    /// The client's request body failed before the upstream answered: the
    /// client's doing, not the upstream's (400 or 408, never 502).
    #[error("{0}")]
    ClientBody(ClientBodyError),
}

/// Why the body a client was sending could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    /// Malformed (a bad chunk), cut short, or reset by the client.
    #[error("the client's request body could not be read: {0}")]
    Unreadable(#[source] BoxError),
    /// Less than 1 KiB of body (and not its end) within
    /// `server.body_read_timeout` while waiting for it.
    #[error("the client sent less than 1 KiB of request body in {}", humantime::format_duration(*.0))]
    Stalled(Duration),
}

impl ClientBodyError {
    /// The client-body failure behind an error from sending the request, if
    /// that is what ended it (hyper wraps the body's error as its cause).
    fn find<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Self> {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if let Some(found) = error.downcast_ref::<Self>() {
                return Some(found);
            }
            cause = error.source();
        }
        None
    }
}

/// How requests reach the app (`upstream.protocol`).
#[derive(Debug, Clone)]
enum Transport {
    Http1(Arc<Pool>),
    Multiplexed(Arc<Multiplexed>),
}

/// The app behind portcullis.
#[derive(Debug, Clone)]
pub struct Upstream {
    transport: Transport,
    /// `Host` for requests that came without one (HTTP/1.0): the upstream's.
    host: HeaderValue,
    /// The path of `upstream.url` without its trailing `/`; prefixed to every request.
    base_path: String,
    timeout: Duration,
    /// Longest wait for the next bytes of a client's request body.
    body_read_timeout: Duration,
    tunnels: TaskTracker,
}

impl Upstream {
    /// `body_read_timeout` (`server.body_read_timeout`): a client whose
    /// request body stalls that long (no bytes while portcullis waits for
    /// them) has its request ended: `408` before the upstream has answered, a
    /// reset after; the upstream connection is closed.
    ///
    /// # Panics
    /// If `cfg.url` is not an `http`/`https` URL with a host, which config
    /// validation guarantees.
    pub fn new(cfg: &UpstreamConfig, body_read_timeout: Duration) -> Self {
        Self::with_tunnels(cfg, body_read_timeout, TaskTracker::new())
    }

    /// [`Upstream::new`], its upgraded connections tracked by `tunnels`
    /// (shared by every route's upstream, so shutdown waits for them all).
    pub fn with_tunnels(
        cfg: &UpstreamConfig,
        body_read_timeout: Duration,
        tunnels: TaskTracker,
    ) -> Self {
        let url = &cfg.url;
        let host = match url.host() {
            Some(url::Host::Domain(domain)) => domain.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => panic!("validated upstream.url has a host"),
        };
        let port = url
            .port_or_known_default()
            .expect("validated upstream.url has an http(s) scheme");
        let host_header =
            HeaderValue::from_str(&url[url::Position::BeforeHost..url::Position::AfterPort])
                .expect("a URL's host and port are a valid header value");

        let connect_timeout = cfg.timeout.min(CONNECT_TIMEOUT);
        let transport = match (cfg.protocol, url.scheme()) {
            (UpstreamProtocol::Http1, _) | (UpstreamProtocol::Auto, "http") => {
                let tls = (url.scheme() == "https").then(|| tls::connector(cfg, &host));
                let pool = Pool::new(host, port, tls, connect_timeout, pool::IDLE_TIMEOUT);
                Transport::Http1(Arc::new(pool))
            }
            _ => Transport::Multiplexed(Arc::new(Multiplexed::new(cfg, connect_timeout))),
        };

        Self {
            transport,
            host: host_header,
            base_path: url.path().trim_end_matches('/').to_owned(),
            timeout: cfg.timeout,
            body_read_timeout,
            tunnels,
        }
    }

    /// The upgraded connections (WebSocket and the like) in flight, for the
    /// server to wait on at shutdown: hyper no longer sees them.
    pub fn tunnels(&self) -> TaskTracker {
        self.tunnels.clone()
    }

    /// Sends an authorised request, already passed through [`prepare_request`]
    /// and with its identity and `X-Forwarded-*` headers set, to the upstream
    /// and streams the answer back.
    ///
    /// The target is the upstream base plus the request's path and query, sent
    /// as HTTP/1.1. Hop-by-hop headers are removed from the response, except the
    /// `Connection: upgrade` + `Upgrade` pair of a 101. Only the wait for the
    /// response head, from the end of the request body, is timed: bodies may
    /// stream for as long as they take (uploads, downloads, server-sent events).
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
    ) -> Result<Response<Body>, UpstreamError> {
        let upgrade = headers::is_upgrade_request(&req);
        // Taken before the request moves into the client: the upgraded
        // connection only exists once hyper has sent our 101 to the client.
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        // The client connection's place under `server.max_connections`: the
        // tunnel holds its socket after hyper lets go of it.
        let slot = upgrade
            .then(|| {
                req.extensions_mut()
                    .remove::<crate::server::ConnectionSlot>()
            })
            .flatten();

        let (mut parts, body) = req.into_parts();
        if matches!(self.transport, Transport::Multiplexed(_))
            && parts.extensions.remove::<AcceptsTrailers>().is_some()
        {
            parts
                .headers
                .insert(http::header::TE, HeaderValue::from_static("trailers"));
        }
        parts.uri = self.target(&parts.method, &parts.uri)?;
        parts.version = Version::HTTP_11;
        // hyper's connection writes the request as given and adds no `Host`.
        if !parts.headers.contains_key(HOST) {
            parts.headers.insert(HOST, self.host.clone());
        }
        // `upstream.timeout` counts from the end of the request body: a slow
        // upload is the client's time, not the upstream's.
        // A body-less request (every GET) pays for no timer.
        let (body, body_sent) = if body.is_end_stream() {
            (body.map_err(BoxError::from).boxed(), None)
        } else {
            let (sent, body_sent) = oneshot::channel();
            let body = ClientBody {
                body,
                sent: Some(sent),
                stall: Box::pin(tokio::time::sleep(self.body_read_timeout)),
                waiting: false,
                progress: 0,
                timeout: self.body_read_timeout,
            };
            (body.boxed(), Some(body_sent))
        };
        let req = Request::from_parts(parts, body);
        let head_due = async {
            if let Some(body_sent) = body_sent {
                // Sent, or dropped when hyper stops sending it: either way done.
                let _ = body_sent.await;
            }
            tokio::time::sleep(self.timeout).await;
        };
        let sent = tokio::select! {
            sent = self.send(req) => Ok(sent),
            () = head_due => Err(()),
        };

        let mut response = match sent {
            Err(()) => {
                tracing::warn!(timeout = ?self.timeout, "upstream sent no response headers in time");
                return Err(UpstreamError::Timeout(self.timeout));
            }
            Ok(Err(SendError::Connect(error))) => {
                if let Some(tls) = tls::failure(&*error) {
                    tracing::warn!(error = %tls, "upstream TLS handshake failed");
                    return Err(UpstreamError::Tls(tls));
                }
                tracing::warn!(error = %error_chain(&*error), "upstream unreachable");
                return Err(UpstreamError::Unreachable(error));
            }
            Ok(Err(SendError::Protocol(error))) => {
                if let Some(client) = ClientBodyError::find(&*error) {
                    tracing::debug!(error = %client, "request body failed; nothing forwarded in full");
                    return Err(UpstreamError::ClientBody(match client {
                        ClientBodyError::Stalled(after) => ClientBodyError::Stalled(*after),
                        ClientBodyError::Unreadable(_) => ClientBodyError::Unreadable(error),
                    }));
                }
                tracing::warn!(error = %error_chain(&*error), "upstream request failed");
                return Err(UpstreamError::Protocol(error));
            }
            Ok(Ok(response)) => response,
        };

        match (response.status(), client_upgrade) {
            (StatusCode::SWITCHING_PROTOCOLS, Some(client_upgrade)) => {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                self.tunnels.spawn(async move {
                    tunnel::run(client_upgrade, upstream_upgrade).await;
                    drop(slot);
                });
                headers::strip_hop_by_hop_keep_upgrade(response.headers_mut());
            }
            (StatusCode::SWITCHING_PROTOCOLS, None) => {
                tracing::warn!(
                    "upstream switched protocols on a request that asked for no upgrade"
                );
                return Err(UpstreamError::Protocol(
                    "101 without an upgrade request".into(),
                ));
            }
            _ => headers::strip_hop_by_hop(response.headers_mut()),
        }
        Ok(response)
    }

    async fn send(&self, req: Request<Body>) -> Result<Response<Body>, SendError> {
        match &self.transport {
            Transport::Http1(pool) => pool.send(req).await,
            Transport::Multiplexed(client) => client.send(req).await,
        }
    }

    fn target(&self, method: &Method, uri: &Uri) -> Result<Uri, UpstreamError> {
        if method == Method::CONNECT {
            return Err(UpstreamError::InvalidTarget("CONNECT is not proxied"));
        }
        let path_and_query = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        if !path_and_query.as_str().starts_with('/') {
            return Err(UpstreamError::InvalidTarget(
                "only origin-form targets are proxied",
            ));
        }
        // Origin-form: hyper's connection writes the target as given. Without
        // a base path the client's, already parsed, is the target as it is.
        if self.base_path.is_empty() {
            return Ok(Uri::from(path_and_query));
        }
        Uri::try_from(format!("{}{path_and_query}", self.base_path))
            .map_err(|_| UpstreamError::InvalidTarget("path does not form a valid URI"))
    }
}

/// A client's request body on its way upstream. It says when it has been
/// sent in full (or given up), tells its own failures apart from the
/// upstream's ([`ClientBodyError`]), and ends the request when the client
/// stalls: waiting longer than `timeout` for the next [`PROGRESS_BYTES`] (or
/// the end) is an error, which makes hyper abandon the request and close the
/// upstream connection. So a pause of `timeout` ends it, and so does a
/// trickle (a byte every few seconds, the slow POST) that never pauses that
/// long. The wait is timed only while portcullis is waiting for the client,
/// not while the upstream is slow to take what it was given.
struct ClientBody {
    body: Incoming,
    sent: Option<oneshot::Sender<()>>,
    stall: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Waiting for the client: `stall` runs.
    waiting: bool,
    /// Bytes received since `stall` was last set.
    progress: usize,
    timeout: Duration,
}

/// What a request body must bring within each `server.body_read_timeout`
/// (unless it ends first): 1 KiB per 30 s by default, far below any real
/// upload, far above a slow-POST trickle.
const PROGRESS_BYTES: usize = 1024;

impl hyper::body::Body for ClientBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.body).poll_frame(cx) {
            std::task::Poll::Ready(frame) => {
                if let Some(Ok(frame)) = &frame
                    && let Some(data) = frame.data_ref()
                {
                    this.progress += data.len();
                    if this.progress >= PROGRESS_BYTES {
                        this.progress = 0;
                        this.waiting = false;
                    }
                }
                if frame.is_none() || this.body.is_end_stream() {
                    this.sent.take();
                }
                std::task::Poll::Ready(frame.map(|frame| {
                    frame.map_err(|e| BoxError::from(ClientBodyError::Unreadable(e.into())))
                }))
            }
            std::task::Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let due = tokio::time::Instant::now() + this.timeout;
                    this.stall.as_mut().reset(due);
                }
                if this.stall.as_mut().poll(cx).is_ready() {
                    this.sent.take();
                    return std::task::Poll::Ready(Some(Err(BoxError::from(
                        ClientBodyError::Stalled(this.timeout),
                    ))));
                }
                std::task::Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The client sent `TE: trailers` (gRPC does), removed as hop-by-hop but
/// passed on again over HTTP/2, where it is the one `TE` allowed.
#[derive(Clone, Copy)]
struct AcceptsTrailers;

/// Makes a client's request fit to go upstream; call it before adding identity
/// headers, or a client's `Connection: X-Forwarded-User` would remove the header
/// portcullis sets. Removes hop-by-hop headers (RFC 9110 §7.6.1), keeping the
/// `Connection: upgrade` + `Upgrade` pair of an HTTP/1.1 upgrade, and gives an
/// HTTP/2 request (which carries its host in `:authority`) a `Host` header, so
/// it can go on as HTTP/1.1 and X-Forwarded-Host can be derived from it.
pub fn prepare_request<B>(req: &mut Request<B>) {
    if headers::lists_token(req.headers(), &http::header::TE, "trailers") {
        req.extensions_mut().insert(AcceptsTrailers);
    }
    if headers::is_upgrade_request(req) {
        headers::strip_hop_by_hop_keep_upgrade(req.headers_mut());
    } else {
        headers::strip_hop_by_hop(req.headers_mut());
    }
    if !req.headers().contains_key(HOST)
        && let Some(host) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(HOST, host);
    }
}

#[cfg(test)]
mod tests;
