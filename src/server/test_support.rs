//! A real listener on `127.0.0.1:0` around any [`Handler`], for unit tests of
//! the server and of the upstream mechanics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use super::{Handler, ServerLimits, serve};

pub(crate) const LIMITS: ServerLimits = ServerLimits {
    max_header_bytes: 16 * 1024,
    header_read_timeout: Duration::from_secs(5),
    idle_timeout: Duration::from_secs(60),
    keep_alive_interval: Duration::from_secs(20),
    keep_alive_timeout: Duration::from_secs(20),
    max_connections: 1000,
};

pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    done: JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and waits for `serve` to return.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.done).await.unwrap().unwrap();
    }

    pub(crate) fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub(crate) async fn finished(self) -> std::io::Result<()> {
        self.done.await.unwrap()
    }
}

pub(crate) async fn spawn<H: Handler>(
    handler: H,
    limits: ServerLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    tunnels: TaskTracker,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(serve(
        listener,
        tls,
        limits,
        Arc::new(handler),
        tunnels,
        async move {
            let _ = rx.await;
        },
    ));
    Running {
        addr,
        shutdown: Some(tx),
        done,
    }
}
