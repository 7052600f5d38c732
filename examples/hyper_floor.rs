//! The load benchmark's floor reference (`bench/load.sh`, target `hyper-floor`),
//! not product code: the least an HTTP/1.1 reverse proxy on hyper 1 does, with
//! hyper's HTTP/1 server and client connections, a current-thread runtime and
//! the kind of per-thread idle stack portcullis uses, and no authentication,
//! header rewriting, timers, HTTP/2 or upgrades (portcullis serves both
//! protocols through hyper-util's `auto` connection, and boxes its bodies).
//! What it reaches is what the HTTP stack allows a hyper-based proxy. It keeps
//! every connection the upstream leaves open (no `Connection: close` or idle
//! handling): wrk's load needs none.
//!
//! ```text
//! hyper_floor LISTEN_ADDR UPSTREAM_ADDR   e.g. hyper_floor 127.0.0.1:28085 127.0.0.1:28081
//! ```

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Sender = SendRequest<Incoming>;

thread_local! {
    /// Idle upstream connections, most recently released last.
    static IDLE: RefCell<Vec<Sender>> = const { RefCell::new(Vec::new()) };
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let usage = "usage: hyper_floor LISTEN_ADDR UPSTREAM_ADDR";
    let mut args = std::env::args().skip(1);
    let (listen, upstream) = (args.next().expect(usage), args.next().expect(usage));
    let upstream: SocketAddr = upstream.parse().expect("UPSTREAM_ADDR is not ip:port");
    let listener = TcpListener::bind(listen).await.expect("cannot listen");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // e.g. out of file descriptors: pause rather than spin on the
            // core the other servers are measured on.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let proxy = service_fn(move |req| proxy(req, upstream));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), proxy)
                .await;
        });
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn proxy(
    req: Request<Incoming>,
    upstream: SocketAddr,
) -> Result<Response<Either<Returning, Empty<Bytes>>>, Infallible> {
    Ok(match forward(req, upstream).await {
        Ok(response) => response.map(Either::Left),
        Err(_) => {
            let mut bad_gateway = Response::new(Either::Right(Empty::new()));
            *bad_gateway.status_mut() = StatusCode::BAD_GATEWAY;
            bad_gateway
        }
    })
}

/// `req` unchanged but for its target (origin-form) and version.
async fn forward(
    mut req: Request<Incoming>,
    upstream: SocketAddr,
) -> Result<Response<Returning>, BoxError> {
    let path = req.uri().path_and_query().cloned();
    *req.uri_mut() = Uri::from(path.unwrap_or_else(|| PathAndQuery::from_static("/")));
    *req.version_mut() = Version::HTTP_11;
    let (sender, response) = match checkout() {
        Some(mut sender) => match sender.try_send_request(req).await {
            Ok(response) => (sender, response),
            // Closed by the upstream while idle, before the request went out:
            // a new connection may carry it, as portcullis' pool does.
            Err(mut error) => match error.take_message() {
                Some(req) => send_on_new(req, upstream).await?,
                None => return Err(error.into_error().into()),
            },
        },
        None => send_on_new(req, upstream).await?,
    };
    Ok(response.map(|body| {
        let mut body = Returning {
            body,
            sender: Some(sender),
        };
        // Bodies known to be empty are never polled: release now.
        if body.body.is_end_stream() {
            body.release();
        }
        body
    }))
}

/// The most recently released connection that is ready; closed ones are
/// dropped, one still finishing its exchange stays for later.
fn checkout() -> Option<Sender> {
    IDLE.with_borrow_mut(|idle| {
        while let Some(i) = idle.iter().rposition(|s| s.is_ready() || s.is_closed()) {
            let sender = idle.remove(i);
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    })
}

async fn send_on_new(
    req: Request<Incoming>,
    upstream: SocketAddr,
) -> Result<(Sender, Response<Incoming>), BoxError> {
    let mut sender = connect(upstream).await?;
    let response = sender.send_request(req).await?;
    Ok((sender, response))
}

async fn connect(upstream: SocketAddr) -> Result<Sender, BoxError> {
    let tcp = TcpStream::connect(upstream).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// A response body that puts its connection back on the idle stack once it
/// has ended; dropped early or failed, the connection is dropped with it.
struct Returning {
    body: Incoming,
    sender: Option<Sender>,
}

impl Returning {
    fn release(&mut self) {
        if let Some(sender) = self.sender.take() {
            IDLE.with_borrow_mut(|idle| idle.push(sender));
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            // hyper's server stops polling once `is_end_stream` is true, so the
            // last data frame may be the last poll.
            None => self.release(),
            Some(Ok(_)) if self.body.is_end_stream() => self.release(),
            Some(Ok(_)) => {}
            Some(Err(_)) => self.sender = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
