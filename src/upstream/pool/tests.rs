//! The pool against a raw-socket upstream, which shows exactly which
//! connection each request arrived on and when a connection closed.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;
use crate::empty;

/// What the upstream saw: a request on connection `n`, or connection `n` closed.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Request(usize),
    Closed(usize),
}

/// An upstream answering every request head with `answer`; after
/// `requests_per_conn` answers it closes the connection.
async fn upstream(
    answer: &'static str,
    requests_per_conn: usize,
) -> (u16, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for n in 0.. {
            let (conn, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(conn, n, answer, requests_per_conn, seen.clone()));
        }
    });
    (port, rx)
}

async fn serve(
    mut conn: TcpStream,
    n: usize,
    answer: &'static str,
    requests_per_conn: usize,
    seen: mpsc::UnboundedSender<Seen>,
) {
    let mut buf = Vec::new();
    let mut answered = 0;
    loop {
        let mut chunk = [0u8; 1024];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => buf.extend_from_slice(&chunk[..read]),
        }
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            seen.send(Seen::Request(n)).unwrap();
            conn.write_all(answer.as_bytes()).await.unwrap();
            answered += 1;
        }
        if answered == requests_per_conn {
            break;
        }
    }
    seen.send(Seen::Closed(n)).unwrap();
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

fn pool(port: u16, idle_timeout: Duration) -> Arc<Pool> {
    Arc::new(Pool::new(
        "127.0.0.1".into(),
        port,
        None,
        Duration::from_secs(5),
        idle_timeout,
    ))
}

async fn get(pool: &Arc<Pool>) -> (StatusCode, Bytes) {
    let req = Request::get("/")
        .header("host", "upstream")
        .body(empty())
        .unwrap();
    let Ok(response) = pool.send(req).await else {
        panic!("the request failed")
    };
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("the upstream saw nothing")
        .unwrap()
}

#[tokio::test]
async fn requests_one_after_another_share_one_connection() {
    let (port, mut seen) = upstream(OK, usize::MAX).await;
    let pool = pool(port, IDLE_TIMEOUT);
    for _ in 0..5 {
        assert_eq!(get(&pool).await, (StatusCode::OK, Bytes::from("ok")));
        assert_eq!(next(&mut seen).await, Seen::Request(0));
    }
    assert_eq!(pool.idle_here(), 1);
}

#[tokio::test]
async fn concurrent_requests_get_their_own_connections_then_both_are_kept() {
    let (port, mut seen) = upstream(OK, usize::MAX).await;
    let pool = pool(port, IDLE_TIMEOUT);
    let (a, b) = tokio::join!(get(&pool), get(&pool));
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    let mut conns = [next(&mut seen).await, next(&mut seen).await];
    conns.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(conns, [Seen::Request(0), Seen::Request(1)]);
    assert_eq!(pool.idle_here(), 2);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_used_again() {
    // One answer per connection, closed without saying so.
    let (port, mut seen) = upstream(OK, 1).await;
    let pool = pool(port, IDLE_TIMEOUT);
    for n in 0..3 {
        assert_eq!(get(&pool).await.0, StatusCode::OK);
        assert_eq!(next(&mut seen).await, Seen::Request(n));
        assert_eq!(next(&mut seen).await, Seen::Closed(n));
        // Let the connection's task see the close before the next checkout;
        // if it has not yet, the request is sent again on a new connection.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn connection_close_and_http10_answers_are_not_pooled() {
    for answer in [
        "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ] {
        let (port, mut seen) = upstream(answer, usize::MAX).await;
        let pool = pool(port, IDLE_TIMEOUT);
        assert_eq!(get(&pool).await.0, StatusCode::OK, "{answer}");
        assert_eq!(next(&mut seen).await, Seen::Request(0));
        assert_eq!(pool.idle_here(), 0, "{answer}");
        assert_eq!(get(&pool).await.0, StatusCode::OK, "{answer}");
        assert_eq!(next(&mut seen).await, Seen::Closed(0), "{answer}");
        assert_eq!(next(&mut seen).await, Seen::Request(1), "{answer}");
    }
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let (port, mut seen) = upstream(OK, usize::MAX).await;
    let pool = pool(port, Duration::from_millis(300));
    assert_eq!(get(&pool).await.0, StatusCode::OK);
    assert_eq!(next(&mut seen).await, Seen::Request(0));
    // Closed by portcullis, not by the upstream (which never closes).
    assert_eq!(next(&mut seen).await, Seen::Closed(0));
    // The dead handle is skipped: the next request opens a new connection.
    assert_eq!(get(&pool).await.0, StatusCode::OK);
    assert_eq!(next(&mut seen).await, Seen::Request(1));
}

#[tokio::test]
async fn a_busy_connection_is_not_closed_by_the_idle_timer() {
    // The answer's body arrives well after the idle timeout.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf).await.unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nsl")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
        conn.write_all(b"ow").await.unwrap();
        let _ = conn.read(&mut buf).await;
    });
    let pool = pool(port, Duration::from_millis(300));
    assert_eq!(get(&pool).await, (StatusCode::OK, Bytes::from("slow")));
}

/// An upstream serving one connection at a time, each for one request; it
/// closes the connection when told to over `control`, and says it has done so
/// on `control` too, from the same task and in that order.
async fn upstream_closing_on_command() -> (u16, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let side = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (control, accepted) = tokio::join!(
        TcpStream::connect(side.local_addr().unwrap()),
        side.accept()
    );
    let mut upstream_end = accepted.unwrap().0;
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut chunk = [0u8; 1024];
                let read = conn.read(&mut chunk).await.unwrap();
                assert_ne!(read, 0, "the connection closed before a request");
                buf.extend_from_slice(&chunk[..read]);
            }
            conn.write_all(OK.as_bytes()).await.unwrap();
            upstream_end.read_u8().await.unwrap();
            upstream_end.write_u8(0).await.unwrap();
            drop(conn);
        }
    });
    (port, control.unwrap())
}

#[tokio::test]
async fn a_request_on_a_connection_closed_unnoticed_goes_out_on_a_new_one() {
    let (port, mut control) = upstream_closing_on_command().await;
    let pool = pool(port, IDLE_TIMEOUT);
    for n in 0..50 {
        assert_eq!(get(&pool).await, (StatusCode::OK, Bytes::from("ok")), "{n}");
        assert_eq!(pool.idle_here(), 1, "{n}");
        // The idle connection closes now. The word that it did arrives on
        // `control` just before the close reaches the connection, so this
        // task runs before the connection's task reads the close: the next
        // request is handed to a connection hyper still thinks open, which
        // gives it back unsent, and it must go out on a new connection.
        control.write_u8(1).await.unwrap();
        control.read_u8().await.unwrap();
    }
}

/// A connection given back on one worker serves a request on another once
/// that worker's stack is full; only then does the other worker dial.
#[test]
fn a_worker_with_no_idle_connection_takes_one_given_back_on_another() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (port, mut seen) = runtime.block_on(upstream(OK, usize::MAX));
    let pool = pool(port, IDLE_TIMEOUT);
    // `Handle::block_on` runs each batch on a thread of its own, so its
    // checkouts and releases use that thread's stack. The thread then waits
    // for `done`: the stacks are per live thread, an exited one's goes to the
    // next thread started.
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let finished = Arc::new(std::sync::Mutex::new(finished));
    let batch = |n: usize| {
        let (pool, handle) = (Arc::clone(&pool), runtime.handle().clone());
        let (ran, has_run) = std::sync::mpsc::channel();
        let finished = Arc::clone(&finished);
        let thread = std::thread::spawn(move || {
            handle.block_on(async {
                let gets = (0..n).map(|_| get(&pool));
                for (status, _) in futures_util::future::join_all(gets).await {
                    assert_eq!(status, StatusCode::OK);
                }
            });
            ran.send(()).unwrap();
            let _ = finished.lock().unwrap().recv();
        });
        has_run.recv().unwrap();
        thread
    };
    let connections_of = |seen: &mut mpsc::UnboundedReceiver<Seen>, n: usize| {
        let mut conns: Vec<usize> = (0..n)
            .map(|_| match runtime.block_on(next(seen)) {
                Seen::Request(conn) => conn,
                closed => panic!("{closed:?}"),
            })
            .collect();
        conns.sort_unstable();
        conns
    };

    // Ten at once on one thread: ten connections, eight kept on its stack,
    // two in the shared queue.
    let first = batch(LOCAL_IDLE + 2);
    assert_eq!(
        connections_of(&mut seen, LOCAL_IDLE + 2),
        (0..LOCAL_IDLE + 2).collect::<Vec<_>>()
    );
    // Two at once on another thread: the two from the queue, no new connection.
    let second = batch(2);
    let reused = connections_of(&mut seen, 2);
    assert!(
        reused.iter().all(|&conn| conn < LOCAL_IDLE + 2),
        "{reused:?}"
    );
    assert_eq!(seen.try_recv().ok(), None);
    drop(done);
    first.join().unwrap();
    second.join().unwrap();
}
