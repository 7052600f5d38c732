//! Listeners: the accept loop, optional TLS, HTTP/1.1 + HTTP/2 with upgrades,
//! limits on request heads, and graceful shutdown (STYLE §3, §8).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::headers::PeerIp;
use prometheus_client::metrics::gauge::Gauge;

/// How long shutdown waits for open connections, then again for tunnels.
const DRAIN_CAP: Duration = Duration::from_secs(10);
/// Pause after a failed accept: errors such as EMFILE persist until some
/// connection closes, and retrying at once would only spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Concurrent HTTP/2 streams per connection (hyper's default is unbounded).
const MAX_CONCURRENT_STREAMS: u32 = 250;
/// Streams an HTTP/2 client may open and reset before the server has seen
/// them (the "rapid reset" attack, CVE-2023-44487); hyper's default, said here.
const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// HTTP/2 keep-alive: a PING this often, on idle connections too; a peer that
/// has not answered within [`KEEP_ALIVE_TIMEOUT`] is gone and its connection
/// is closed (a dead peer, or one stuck in the middle of a header block).
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// At most one "connection refused" warning per this long: a flood past
/// `server.max_connections` is one log line, with a count, not one per connection.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// hyper refuses an HTTP/1 read buffer smaller than this.
const MIN_HTTP1_BUF: usize = 8192;

/// What is known about the connection a request arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The peer's address as `X-Forwarded-For` writes it.
    pub peer_ip: PeerIp,
    pub tls: bool,
}

/// What the server calls for every request. It always answers: failures are
/// responses too (`respond.rs`), since an error returned to hyper would
/// abort the connection.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        req: http::Request<Incoming>,
        conn: ConnInfo,
    ) -> impl Future<Output = http::Response<crate::Body>> + Send;

    /// A gauge of the client connections open (tunnels included), if the
    /// handler keeps metrics.
    fn open_connections(&self) -> Option<Gauge> {
        None
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Largest request head; a bigger one is refused (`431` on HTTP/1.1, the
    /// advertised `SETTINGS_MAX_HEADER_LIST_SIZE` on HTTP/2).
    pub max_header_bytes: usize,
    /// A client that has not sent a whole request head (or finished its TLS
    /// handshake) by then is disconnected: slowloris.
    pub header_read_timeout: Duration,
    /// An HTTP/2 connection with no stream open for this long is told to go
    /// away (GOAWAY) and closed. (An idle HTTP/1.1 connection is closed after
    /// `header_read_timeout`, the wait for its next request head.)
    pub idle_timeout: Duration,
    /// HTTP/2 keep-alive PING interval and how long an answer may take. A
    /// connection told to go away that still has no stream open after the
    /// timeout is dropped.
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
    /// Client connections open at once; one more is closed as soon as it is
    /// accepted.
    pub max_connections: usize,
}

/// Serves `handler` on `listener` until `shutdown` resolves; then stops
/// accepting, lets open connections finish (at most 10 s), and waits for the
/// upgraded connections in `tunnels` (at most 10 s more).
///
/// With `tls`, every connection is TLS, and ALPN picks HTTP/2 or HTTP/1.1.
/// Without, HTTP/1.1 and prior-knowledge HTTP/2 are both served.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ServerLimits,
    handler: Arc<H>,
    tunnels: TaskTracker,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let builder = Arc::new(builder(limits));
    let tls = tls.map(TlsAcceptor::from);
    let stopping = CancellationToken::new();
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let mut refusals = Refusals::default();
    let open_connections = handler.open_connections();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Over the cap: accepted (so it leaves the kernel's backlog) and
        // closed at once, before any byte of it is read.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            refusals.note(limits.max_connections);
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %peer, "could not set TCP_NODELAY");
        }
        let task = ConnectionTask {
            builder: builder.clone(),
            conn: ConnInfo {
                peer,
                peer_ip: PeerIp::new(peer.ip()),
                tls: tls.is_some(),
            },
            handler: handler.clone(),
            stopping: stopping.clone(),
            limits,
            slot: ConnectionSlot::new(slot, open_connections.clone()),
        };
        // Two kinds of task, so a plain connection's task is not sized for the
        // TLS stream and handshake it never has (each connection holds its
        // task's memory for as long as it stays open).
        match &tls {
            None => {
                connections.spawn(task.serve(stream));
            }
            Some(tls) => {
                let tls = tls.clone();
                connections.spawn(async move {
                    match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)).await
                    {
                        Ok(Ok(stream)) => task.serve(stream).await,
                        Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);

    tracing::info!("shutting down: draining connections");
    stopping.cancel();
    connections.close();
    if tokio::time::timeout(DRAIN_CAP, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_CAP:?}; closing them");
    }
    tunnels.close();
    if tokio::time::timeout(DRAIN_CAP, tunnels.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tunnels.len(),
            "upgraded connections still open after {DRAIN_CAP:?}; closing them"
        );
    }
    Ok(())
}

/// Connections closed for being over `server.max_connections`, logged at most
/// once per [`REFUSAL_LOG_EVERY`]. Owned by the accept loop: no lock.
#[derive(Default)]
struct Refusals {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    fn note(&mut self, max_connections: usize) {
        self.unlogged += 1;
        if self
            .last_logged
            .is_some_and(|at| at.elapsed() < REFUSAL_LOG_EVERY)
        {
            return;
        }
        tracing::warn!(
            max_connections,
            refused = self.unlogged,
            "server.max_connections reached: closing new connections until some end; \
             raise server.max_connections (and the open-file limit) if this is regular load"
        );
        self.last_logged = Some(Instant::now());
        self.unlogged = 0;
    }
}

fn builder(limits: ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_HTTP1_BUF));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(limits.keep_alive_interval)
        .keep_alive_timeout(limits.keep_alive_timeout);
    builder
}

/// What one connection's task serves it with, besides its stream.
struct ConnectionTask<H> {
    builder: Arc<auto::Builder<TokioExecutor>>,
    conn: ConnInfo,
    handler: Arc<H>,
    /// Cancelled when the server shuts down: the connection is told to go
    /// away. Taken in the accept loop, so a connection accepted just before
    /// shutdown is still drained.
    stopping: CancellationToken,
    limits: ServerLimits,
    /// The connection's place under `server.max_connections`, given back when
    /// the task ends, or, after an upgrade, when the tunnel does.
    slot: ConnectionSlot,
}

/// A connection's place under `server.max_connections`. An upgrade request
/// carries a copy in its extensions, which the tunnel keeps for as long as it
/// holds the client's socket: hyper is done with the connection by then.
#[derive(Clone)]
pub struct ConnectionSlot {
    _held: Arc<HeldSlot>,
}

struct HeldSlot {
    _permit: OwnedSemaphorePermit,
    /// Counted up while the slot is held.
    open: Option<Gauge>,
}

impl ConnectionSlot {
    fn new(permit: OwnedSemaphorePermit, open: Option<Gauge>) -> Self {
        if let Some(open) = &open {
            open.inc();
        }
        Self {
            _held: Arc::new(HeldSlot {
                _permit: permit,
                open,
            }),
        }
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        if let Some(open) = &self.open {
            open.dec();
        }
    }
}

/// What a connection's requests tell its task: whether one has come, and for
/// HTTP/2, how many streams are open and since when none has been.
struct Activity {
    asked: AtomicBool,
    http2: AtomicBool,
    /// HTTP/2 requests whose response has not been sent (or dropped) yet.
    open: AtomicUsize,
    /// Milliseconds after `born` at which `open` last fell to zero.
    idle_since: AtomicU64,
    born: Instant,
}

impl Activity {
    fn millis(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Holds one HTTP/2 stream open in [`Activity`] until the response's body is
/// done with (sent, or dropped on a reset).
struct OpenStream(Arc<Activity>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_since.store(self.0.millis(), Ordering::Release);
        }
    }
}

/// A response body that carries its stream's [`OpenStream`] (HTTP/2 only):
/// no allocation, the body is moved in as it is.
struct ServedBody {
    body: crate::Body,
    _open: Option<OpenStream>,
}

impl hyper::body::Body for ServedBody {
    type Data = bytes::Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Where a connection's timer is in its life.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first request (`header_read_timeout`).
    First,
    /// HTTP/2 after its first request: closed after `idle_timeout` without a stream.
    Idle,
    /// Told to go away; dropped if still without a stream `keep_alive_timeout` later.
    Closing,
    /// HTTP/1 after its first request: hyper times it from here.
    Untimed,
}

impl<H: Handler> ConnectionTask<H> {
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            builder,
            conn,
            handler,
            stopping,
            limits,
            slot,
        } = self;
        let peer = conn.peer;
        let activity = Arc::new(Activity {
            asked: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            born: Instant::now(),
        });
        let seen = Arc::clone(&activity);
        let service = service_fn(move |mut req: http::Request<Incoming>| {
            seen.asked.store(true, Ordering::Relaxed);
            let open = (req.version() == http::Version::HTTP_2).then(|| {
                seen.http2.store(true, Ordering::Relaxed);
                seen.open.fetch_add(1, Ordering::AcqRel);
                OpenStream(Arc::clone(&seen))
            });
            // Only a request that may upgrade pays for this (HTTP/1.1 with
            // `Upgrade`; the upstream decides the rest).
            if req.headers().contains_key(http::header::UPGRADE) {
                req.extensions_mut().insert(slot.clone());
            }
            // Settled here, not in the future: what the future holds across
            // its await is moved with it on every request.
            let refused = crate::headers::settle_host(&mut req).err();
            let handler = handler.clone();
            let conn = conn.clone();
            async move {
                let response = match refused {
                    None => handler.handle(req, conn).await,
                    Some(why) => {
                        crate::respond::problem(crate::respond::Problem::bad_request(why), false)
                    }
                };
                Ok::<_, Infallible>(response.map(|body| ServedBody { body, _open: open }))
            }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        let mut connection = std::pin::pin!(connection);
        let mut stop = std::pin::pin!(stopping.cancelled());
        let mut told_to_go = false;
        // hyper times every HTTP/1 head it waits for, idle keep-alive included,
        // but hyper-util first waits, untimed, for the bytes that tell HTTP/1 from
        // HTTP/2, and an HTTP/2 connection may open no stream: one that has asked
        // nothing by the time a head is due is closed. After the first request
        // an HTTP/1 connection's timer goes (later wake-ups do not poll it); an
        // HTTP/2 one's times its idleness.
        let mut phase = Phase::First;
        let mut timer = Some(Box::pin(tokio::time::sleep(limits.header_read_timeout)));
        let ended = std::future::poll_fn(|cx| {
            if !told_to_go && stop.as_mut().poll(cx).is_ready() {
                told_to_go = true;
                connection.as_mut().graceful_shutdown();
            }
            if let Poll::Ready(ended) = connection.as_mut().poll(cx) {
                return Poll::Ready(Some(ended));
            }
            if phase == Phase::First && activity.asked.load(Ordering::Relaxed) {
                if activity.http2.load(Ordering::Relaxed) {
                    phase = Phase::Idle;
                    let deadline = tokio::time::Instant::now() + limits.idle_timeout;
                    if let Some(timer) = timer.as_mut() {
                        timer.as_mut().reset(deadline);
                    }
                } else {
                    phase = Phase::Untimed;
                    // Dropped, not only left unpolled: while any timer is
                    // registered the runtime reads the clock at every park.
                    timer = None;
                }
            }
            while let Some(timer) = timer.as_mut() {
                if timer.as_mut().poll(cx).is_pending() {
                    break;
                }
                let now = tokio::time::Instant::now();
                let open = activity.open.load(Ordering::Acquire) > 0;
                match phase {
                    Phase::First => return Poll::Ready(None),
                    Phase::Idle if open => timer.as_mut().reset(now + limits.idle_timeout),
                    Phase::Idle => {
                        let since = activity.idle_since.load(Ordering::Acquire);
                        let idle = Duration::from_millis(activity.millis().saturating_sub(since));
                        match limits.idle_timeout.checked_sub(idle) {
                            Some(left) if !left.is_zero() => timer.as_mut().reset(now + left),
                            _ => {
                                tracing::debug!(%peer, "HTTP/2 connection idle for server.idle_timeout; going away");
                                connection.as_mut().graceful_shutdown();
                                told_to_go = true;
                                phase = Phase::Closing;
                                timer.as_mut().reset(now + limits.keep_alive_timeout);
                                // Polled again at once, to send the GOAWAY.
                                cx.waker().wake_by_ref();
                            }
                        }
                    }
                    Phase::Closing if open => timer.as_mut().reset(now + limits.keep_alive_timeout),
                    Phase::Closing => return Poll::Ready(None),
                    // Not reached: an untimed connection has no timer.
                    Phase::Untimed => break,
                }
            }
            Poll::Pending
        })
        .await;
        match ended {
            None if phase == Phase::First => {
                tracing::debug!(%peer, "no request within server.header_read_timeout; closing");
            }
            None => tracing::debug!(%peer, "idle HTTP/2 connection did not go away; closing"),
            Some(Err(error)) => {
                tracing::debug!(error = %error, %peer, "connection ended with an error");
            }
            Some(Ok(())) => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "server.tls_cert {path}: cannot read certificates ({source}); give a PEM file with the certificate chain, leaf first"
    )]
    Certificates {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error(
        "server.tls_cert {path}: no certificate found; give a PEM file with `BEGIN CERTIFICATE` blocks, leaf first"
    )]
    NoCertificates { path: PathBuf },
    #[error(
        "server.tls_key {path}: cannot read a private key ({source}); give an unencrypted PEM key (PKCS#8, PKCS#1 or SEC1)"
    )]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("server.tls_cert / server.tls_key: {0}; check that the key belongs to the certificate")]
    Rejected(#[source] rustls::Error),
}

/// A rustls server configuration from PEM files, offering HTTP/2 and HTTP/1.1
/// by ALPN. Uses ring explicitly: no process-wide crypto provider is assumed.
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    Ok(ServerCertificate::load(cert, key)?.server_config())
}

/// The server's certificate and key, which a reload replaces for the next
/// handshakes (connections already open keep theirs).
#[derive(Debug)]
pub struct ServerCertificate(arc_swap::ArcSwap<CertifiedKey>);

impl ServerCertificate {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self(arc_swap::ArcSwap::new(certified_key(
            cert, key,
        )?))))
    }

    /// Reads both files again; on an error the certificate in use stays.
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<(), TlsError> {
        self.0.store(certified_key(cert, key)?);
        Ok(())
    }

    /// A server configuration that always presents the current certificate.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl rustls::server::ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The chain and key in the PEM files, checked to belong together.
fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificates {
            path: cert.to_owned(),
            source,
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificates {
            path: cert.to_owned(),
        });
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_owned(),
        source,
    })?;
    let certified = CertifiedKey::from_der(certificates, private_key, &crypto_provider())
        .map_err(TlsError::Rejected)?;
    Ok(Arc::new(certified))
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
