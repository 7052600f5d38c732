//! SIGTERM (what `docker stop` and Kubernetes send) while a response is
//! streaming: the real binary lets it finish, then exits 0.

use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis::demo::idp::{DemoIdp, IdpOptions};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep};

use crate::support::{SECRET, closed_addr, read_to_the_end, read_until};

#[tokio::test]
async fn sigterm_lets_a_streaming_response_finish_then_the_process_exits_0() {
    let idp = DemoIdp::start(IdpOptions::default()).await.unwrap();
    let (upstream, _upstream) = portcullis::demo::upstream::start().await.unwrap();
    let addr = closed_addr();
    let issuer = idp.issuer().as_str().trim_end_matches('/').to_owned();
    let config = format!(
        "[server]\nlisten = \"{addr}\"\n[upstream]\nurl = \"http://{upstream}\"\n\
         [session]\nsecret = \"{SECRET}\"\n\
         [providers.demo]\nissuer = \"{issuer}\"\nclient_id = \"portcullis-demo\"\nclient_secret = \"demo-secret\"\n\
         [[rules]]\npath = \"/stream\"\npublic = true\n"
    );
    let dir = std::env::temp_dir().join(format!("portcullis-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--config", path.to_str().unwrap(), "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Until it listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        if let Ok(conn) = TcpStream::connect(addr).await {
            break conn;
        }
        assert!(Instant::now() < deadline, "portcullis did not start");
        sleep(Duration::from_millis(20)).await;
    };
    conn.write_all(format!("GET /stream HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut conn, &mut got, "chunk 0").await;

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    // The stream runs to its end (the last chunk, then the empty one).
    assert!(
        read_to_the_end(&mut conn, &mut got).await,
        "the stream stalled after SIGTERM"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("chunk 4") && text.ends_with("0\r\n\r\n"),
        "{text}"
    );

    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}
