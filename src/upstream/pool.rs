//! The HTTP/1.1 connections to the one upstream, driven through
//! `hyper::client::conn::http1` directly.
//!
//! hyper-util's legacy client does this job for any number of hosts and
//! protocols and pays for it on every request: a keyed, locked pool checkout,
//! and for HTTP/1 a spawned task per response that waits for the connection to
//! become ready again. Here idle connections wait in a stack per worker thread
//! (no lock, no atomic), and a connection goes back the moment its response
//! body has ended.
//!
//! A request's task may move between workers, so a connection checked out on
//! one is often given back on another. Alone, the stacks would drift apart:
//! one worker dialling while idle connections pile up on the other (a soak
//! with two workers held ~150 upstream connections for ~12 requests in
//! flight). So a stack keeps at most [`LOCAL_IDLE`]; the rest go to a shared
//! lock-free queue, which a worker whose stack is empty takes from before it
//! dials.
//!
//! Idle connections are closed by their own task after [`IDLE_TIMEOUT`], so a
//! quiet proxy does not hold the upstream's sockets open; the stack then only
//! holds a closed handle, dropped at the next checkout or release.

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use http::header::CONNECTION;
use http::{Request, Response, StatusCode, Version};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use thread_local::ThreadLocal;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;

use crate::headers::lists_token;
use crate::{Body, BoxError};

/// An idle connection is closed after this long: upstreams close theirs too
/// (nginx after 75 s), and a stale one would cost a failed send.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many idle connections wait on a worker's own stack; more go
/// to the shared queue. Enough for the bursts one worker serves back to back,
/// few enough that a surplus reaches the other workers.
const LOCAL_IDLE: usize = 8;
/// At most this many idle connections wait in the shared queue; more are
/// closed on release. Matches the concurrency a single worker can keep busy.
const SHARED_IDLE: usize = 256;
/// [`Idleness`] of a connection that is carrying a request.
const BUSY: u64 = u64::MAX;

/// Why a request got no response head.
pub(super) enum SendError {
    /// No connection could be opened (TCP, TLS or HTTP handshake).
    Connect(BoxError),
    /// A connection was open but the exchange on it failed.
    Protocol(BoxError),
}

pub(super) struct Pool {
    host: String,
    port: u16,
    /// `None` for `http` upstreams.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// Idle connections on this worker, most recently released last.
    idle: ThreadLocal<RefCell<Vec<Pooled>>>,
    /// Idle connections beyond [`LOCAL_IDLE`], for any worker.
    shared: ArrayQueue<Pooled>,
    /// The zero of [`Idleness`] timestamps.
    epoch: Instant,
}

/// A connection's sender, and when it went idle, shared with the task that
/// drives it.
struct Pooled {
    sender: SendRequest<Body>,
    idleness: Arc<Idleness>,
}

/// Milliseconds since the pool's epoch at which the connection went idle, or
/// [`BUSY`]. Written at checkout and release, read by the connection's task.
struct Idleness(AtomicU64);

impl Pool {
    pub(super) fn new(
        host: String,
        port: u16,
        tls: Option<(TlsConnector, ServerName<'static>)>,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            host,
            port,
            tls,
            connect_timeout,
            idle_timeout,
            idle: ThreadLocal::new(),
            shared: ArrayQueue::new(SHARED_IDLE),
            epoch: Instant::now(),
        }
    }

    /// Sends `req` (origin-form, with `Host`) on an idle connection or a new
    /// one. The response's body hands the connection back when it ends.
    pub(super) async fn send(
        self: &Arc<Self>,
        req: Request<Body>,
    ) -> Result<Response<Body>, SendError> {
        let (pooled, response) = match self.checkout() {
            Some(mut pooled) => match pooled.sender.try_send_request(req).await {
                Ok(response) => (pooled, Ok(response)),
                // The upstream (or our idle timer) closed the connection before
                // the request went out: nothing was sent, so a new connection
                // may carry it.
                Err(mut error) => match error.take_message() {
                    Some(req) => Box::pin(self.send_on_new(req)).await?,
                    None => (pooled, Err(error.into_error())),
                },
            },
            // Boxed: dialling (TCP, TLS, handshake) is rare and its future large.
            None => Box::pin(self.send_on_new(req)).await?,
        };
        let response = response.map_err(|e| SendError::Protocol(e.into()))?;
        // An upgraded connection belongs to the tunnel; one the upstream is
        // closing (`Connection: close`, HTTP/1.0) is of no further use.
        let reusable = response.status() != StatusCode::SWITCHING_PROTOCOLS
            && response.version() == Version::HTTP_11
            && !lists_token(response.headers(), &CONNECTION, "close");
        let returner = reusable.then(|| Returner {
            pool: Arc::clone(self),
            pooled,
        });
        Ok(response.map(|body| {
            let mut body = Returning { body, returner };
            // Bodies known to be empty (204, 304, `Content-Length: 0`) are
            // never polled, so the connection goes back now.
            if hyper::body::Body::is_end_stream(&body.body) {
                body.release();
            }
            http_body_util::BodyExt::boxed(body)
        }))
    }

    async fn send_on_new(
        &self,
        req: Request<Body>,
    ) -> Result<(Pooled, hyper::Result<Response<Incoming>>), SendError> {
        let mut pooled = tokio::time::timeout(self.connect_timeout, self.dial())
            .await
            .map_err(|_elapsed| SendError::Connect("connect timed out".into()))?
            .map_err(SendError::Connect)?;
        let response = pooled.sender.send_request(req).await;
        Ok((pooled, response))
    }

    async fn dial(&self) -> Result<Pooled, BoxError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        // Request heads are written in one go; Nagle would only delay them.
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => self.handshake(tcp).await,
            Some((tls, name)) => self.handshake(tls.connect(name.clone(), tcp).await?).await,
        }
    }

    async fn handshake<T>(&self, io: T) -> Result<Pooled, BoxError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = Builder::new().handshake(TokioIo::new(io)).await?;
        let idleness = Arc::new(Idleness(AtomicU64::new(BUSY)));
        let watched = Arc::clone(&idleness);
        let (epoch, idle_timeout) = (self.epoch, self.idle_timeout);
        // The idle timer runs in a task of its own and says so over a
        // oneshot: the connection's task is woken several times a request,
        // and polling a oneshot costs far less than polling a timer.
        let (mut close, closing) = oneshot::channel();
        tokio::spawn(async move {
            let expired = tokio::select! {
                () = watched.expired(epoch, idle_timeout) => true,
                // The connection ended by itself.
                () = close.closed() => false,
            };
            if expired {
                tracing::trace!("closing an idle upstream connection");
                let _ = close.send(());
            }
        });
        // `with_upgrades` hands the socket to `hyper::upgrade::on` after a 101
        // instead of closing it.
        tokio::spawn(async move {
            tokio::select! {
                biased;
                result = connection.with_upgrades() => if let Err(error) = result {
                    tracing::debug!(%error, "upstream connection ended with an error");
                },
                _ = closing => {}
            }
        });
        Ok(Pooled { sender, idleness })
    }

    /// The most recently released connection on this worker that is ready for
    /// a request, else one from the shared queue. Closed ones are dropped; one
    /// still finishing its previous exchange (a request body still streaming
    /// after an early response) is left for later on this worker's stack.
    fn checkout(&self) -> Option<Pooled> {
        let mut idle = self.idle.get_or_default().borrow_mut();
        while let Some(i) = idle
            .iter()
            .rposition(|p| p.sender.is_ready() || p.sender.is_closed())
        {
            // `remove`, not `swap_remove`: the order is most recently released last.
            let pooled = idle.remove(i);
            if pooled.sender.is_ready() {
                pooled.idleness.0.store(BUSY, Ordering::Relaxed);
                return Some(pooled);
            }
        }
        drop(idle);
        // One not ready here is closed, or still finishing an exchange: dropped,
        // hyper finishes the exchange and closes it.
        while let Some(pooled) = self.shared.pop() {
            if pooled.sender.is_ready() {
                pooled.idleness.0.store(BUSY, Ordering::Relaxed);
                return Some(pooled);
            }
        }
        None
    }

    fn release(&self, pooled: Pooled) {
        if pooled.sender.is_closed() {
            return;
        }
        pooled.idleness.0.store(self.millis(), Ordering::Relaxed);
        let mut idle = self.idle.get_or_default().borrow_mut();
        // The oldest handle goes when its connection has closed.
        if idle.first().is_some_and(|p| p.sender.is_closed()) {
            idle.remove(0);
        }
        if idle.len() < LOCAL_IDLE {
            idle.push(pooled);
        } else {
            drop(idle);
            // A full queue drops it, which closes it.
            let _ = self.shared.push(pooled);
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(BUSY - 1)
    }

    /// Idle connections held by this thread's stack and the shared queue (tests).
    #[cfg(test)]
    pub(super) fn idle_here(&self) -> usize {
        self.idle.get().map_or(0, |idle| idle.borrow().len()) + self.shared.len()
    }
}

impl Idleness {
    /// Resolves once the connection has been idle for `timeout`; checked a few
    /// times per `timeout`, so it closes at most a third of it late.
    async fn expired(&self, epoch: Instant, timeout: Duration) {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        loop {
            tokio::time::sleep(timeout / 3).await;
            let since = self.0.load(Ordering::Relaxed);
            let now = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            if since != BUSY && now.saturating_sub(since) >= timeout_ms {
                return;
            }
        }
    }
}

/// The connection a response arrived on, to be put back once its body ends.
struct Returner {
    pool: Arc<Pool>,
    pooled: Pooled,
}

/// A response body that returns its connection to the pool when it ends. If
/// it fails or is dropped early the connection is dropped with it, and hyper
/// closes it: its state is unknown.
struct Returning {
    body: Incoming,
    returner: Option<Returner>,
}

impl Returning {
    fn release(&mut self) {
        if let Some(Returner { pool, pooled }) = self.returner.take() {
            pool.release(pooled);
        }
    }
}

impl hyper::body::Body for Returning {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            // hyper's server stops polling once `is_end_stream` is true, so
            // the last data frame may be the last poll.
            None => this.release(),
            Some(Ok(_)) if this.body.is_end_stream() => this.release(),
            Some(Ok(_)) => {}
            Some(Err(_)) => this.returner = None,
        }
        Poll::Ready(frame.map(|frame| frame.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
