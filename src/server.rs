//! Listeners: the accept loop, optional TLS, HTTP/1.1 + HTTP/2 with upgrades,
//! limits on request heads, and graceful shutdown (STYLE §3, §8).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::headers::PeerIp;

/// How long shutdown waits for open connections, then again for tunnels.
const DRAIN_CAP: Duration = Duration::from_secs(10);
/// Pause after a failed accept: errors such as EMFILE persist until some
/// connection closes, and retrying at once would only spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Concurrent HTTP/2 streams per connection (hyper's default is unbounded).
const MAX_CONCURRENT_STREAMS: u32 = 250;
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
}

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Largest request head; a bigger one is refused (`431` on HTTP/1.1, the
    /// advertised `SETTINGS_MAX_HEADER_LIST_SIZE` on HTTP/2).
    pub max_header_bytes: usize,
    /// A client that has not sent a whole request head (or finished its TLS
    /// handshake) by then is disconnected: slowloris.
    pub header_read_timeout: Duration,
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
    let graceful = GracefulShutdown::new();
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
            // Taken here, not in the task, so a connection accepted just
            // before shutdown is still drained.
            watcher: graceful.watcher(),
            first_request_timeout: limits.header_read_timeout,
        };
        // Two kinds of task, so a plain connection's task is not sized for the
        // TLS stream and handshake it never has (each connection holds its
        // task's memory for as long as it stays open).
        match &tls {
            None => {
                tokio::spawn(task.serve(stream));
            }
            Some(tls) => {
                let tls = tls.clone();
                tokio::spawn(async move {
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
    if tokio::time::timeout(DRAIN_CAP, graceful.shutdown())
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
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// What one connection's task serves it with, besides its stream.
struct ConnectionTask<H> {
    builder: Arc<auto::Builder<TokioExecutor>>,
    conn: ConnInfo,
    handler: Arc<H>,
    watcher: Watcher,
    first_request_timeout: Duration,
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
            watcher,
            first_request_timeout,
        } = self;
        let peer = conn.peer;
        let asked = Arc::new(AtomicBool::new(false));
        let first_request = Arc::clone(&asked);
        let service = service_fn(move |req| {
            first_request.store(true, Ordering::Relaxed);
            let handler = handler.clone();
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(handler.handle(req, conn).await) }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        let mut connection = std::pin::pin!(watcher.watch(connection.into_owned()));
        // hyper times every HTTP/1 head it waits for, idle keep-alive included,
        // but hyper-util first waits, untimed, for the bytes that tell HTTP/1 from
        // HTTP/2, and an HTTP/2 connection may open no stream: one that has asked
        // nothing by the time a head is due is closed. The timer goes with the
        // first request, so later wake-ups do not poll it.
        let mut first_due = Some(Box::pin(tokio::time::sleep(first_request_timeout)));
        let ended = std::future::poll_fn(|cx| {
            if let Poll::Ready(ended) = connection.as_mut().poll(cx) {
                return Poll::Ready(Some(ended));
            }
            if asked.load(Ordering::Relaxed) {
                first_due = None;
            } else if let Some(due) = &mut first_due
                && due.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        let Some(ended) = ended else {
            tracing::debug!(%peer, "no request within server.header_read_timeout; closing");
            return;
        };
        if let Err(error) = ended {
            tracing::debug!(error = %error, %peer, "connection ended with an error");
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

    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::Rejected)?
    .with_no_client_auth()
    .with_single_cert(certificates, private_key)
    .map_err(TlsError::Rejected)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
