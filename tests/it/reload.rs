//! Issue #12 item 3: hot reload. In process (the same path SIGHUP takes, with
//! the configuration read from a file): sessions survive a new secret that
//! keeps the old one in `previous_secrets`, the new settings apply to the next
//! request, an invalid file changes nothing, and unchanged providers keep their
//! metadata. The real binary with SIGHUP, a download in flight, the file watch
//! and the TLS certificate: `reload_process`.

use http::StatusCode;

use crate::metrics::{scrape, value};
use crate::support::{Harness, SECRET, Setup};

const NEW_SECRET: &str = "a-new-secret-0123456789abcdef-0123456789";

fn reloads(text: &str, result: &str) -> f64 {
    value(
        text,
        &format!("portcullis_config_reloads_total{{result=\"{result}\"}}"),
    )
}

fn discoveries(text: &str) -> f64 {
    value(
        text,
        "portcullis_provider_metadata_fetches_total{document=\"discovery\"}",
    )
}

#[tokio::test]
async fn a_new_secret_with_the_old_one_kept_keeps_sessions_and_new_headers_apply_at_once() {
    let h = Harness::with(Setup {
        extra_toml: "[headers]\nX-Who = \"sub\"\n".into(),
        ..Setup::default()
    })
    .await;
    let mut b = h.signed_in("ada").await;
    let before = b.get_json(&h.url("/private")).await;
    assert_eq!(before.status, StatusCode::OK);
    assert_eq!(before.upstream_header("x-who").as_deref(), Some("ada"));
    assert_eq!(before.upstream_header("x-mail"), None);

    // The header map alone changes: the session cached before the reload is
    // not served with the old headers.
    h.reload(&[("X-Who = \"sub\"", "X-Who = \"sub\"\nX-Mail = \"email\"")])
        .await
        .expect("valid configuration");
    let after = b.get_json(&h.url("/private")).await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text());
    assert_eq!(after.upstream_header("x-who").as_deref(), Some("ada"));
    assert_eq!(
        after.upstream_header("x-mail").as_deref(),
        Some("ada@example.com")
    );

    // A new secret, the old one kept as a previous one: the cookie still opens.
    h.reload(&[
        (
            &format!("secret = \"{SECRET}\""),
            &format!("secret = \"{NEW_SECRET}\"\nprevious_secrets = [\"{SECRET}\"]"),
        ),
        ("X-Who = \"sub\"", "X-Who = \"sub\"\nX-Mail = \"email\""),
    ])
    .await
    .expect("valid configuration");
    let rotated = b.get_json(&h.url("/private")).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    assert_eq!(rotated.upstream_header("x-who").as_deref(), Some("ada"));
    let metrics = scrape(&h).await;
    assert_eq!(reloads(&metrics, "applied"), 2.0);
    assert_eq!(reloads(&metrics, "refused"), 0.0);
}

#[tokio::test]
async fn a_new_secret_without_the_old_one_ends_sessions() {
    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    assert_eq!(b.get(&h.url("/private")).await.status, StatusCode::OK);
    h.reload(&[(SECRET, NEW_SECRET)]).await.unwrap();
    let resp = b.get(&h.url("/private")).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    assert!(resp.location().starts_with("/oauth2/sign_in"));
}

#[tokio::test]
async fn an_invalid_configuration_is_refused_with_its_reason_and_the_running_one_stays() {
    let h = Harness::with(Setup {
        extra_toml: "[[rules]]\npath = \"/open\"\npublic = true\n".into(),
        ..Setup::default()
    })
    .await;
    let mut anonymous = h.browser();
    assert_eq!(anonymous.get(&h.url("/open")).await.status, StatusCode::OK);
    let refused = h
        .reload(&[
            ("path = \"/open\"", "path = \"/elsewhere\""),
            ("timeout = \"2s\"", "timeout = \"soon\""),
        ])
        .await
        .expect_err("an invalid duration is refused");
    assert!(refused.contains("upstream.timeout"), "{refused}");
    // Still the old rules: /open public, the rest signed in.
    assert_eq!(anonymous.get(&h.url("/open")).await.status, StatusCode::OK);
    assert_eq!(
        anonymous.get(&h.url("/elsewhere")).await.status,
        StatusCode::FOUND
    );
    let metrics = scrape(&h).await;
    assert_eq!(reloads(&metrics, "refused"), 1.0);
    assert_eq!(reloads(&metrics, "applied"), 0.0);

    // A valid one then applies to the next request.
    h.reload(&[("path = \"/open\"", "path = \"/elsewhere\"")])
        .await
        .unwrap();
    assert_eq!(
        anonymous.get(&h.url("/elsewhere")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        anonymous.get(&h.url("/open")).await.status,
        StatusCode::FOUND
    );
}

#[tokio::test]
async fn a_provider_whose_settings_did_not_change_keeps_its_metadata_and_a_changed_one_is_read_again()
 {
    let h = Harness::with(Setup {
        extra_toml: "[[rules]]\npath = \"/open\"\npublic = true\n".into(),
        ..Setup::default()
    })
    .await;
    let fetched = discoveries(&scrape(&h).await);
    assert_eq!(fetched, 1.0);
    let first = h.app();

    // Another part of the configuration changes: the provider stays as it is.
    h.reload(&[("path = \"/open\"", "path = \"/opened\"")])
        .await
        .unwrap();
    assert_eq!(discoveries(&scrape(&h).await), fetched);
    let second = h.app();
    assert!(!std::sync::Arc::ptr_eq(&first, &second));
    assert!(std::ptr::eq(
        first.providers.get("demo").unwrap(),
        second.providers.get("demo").unwrap()
    ));
    let mut b = h.signed_in("ada").await;
    assert_eq!(b.get(&h.url("/private")).await.status, StatusCode::OK);

    // The provider's own settings change: it starts afresh.
    h.reload(&[(
        "client_id = \"portcullis-demo\"",
        "client_id = \"portcullis-demo\"\nscopes = [\"openid\", \"email\"]",
    )])
    .await
    .unwrap();
    assert!(
        h.app()
            .providers
            .wait_ready(std::time::Duration::from_secs(10))
            .await
    );
    assert_eq!(discoveries(&scrape(&h).await), fetched + 1.0);
    assert!(!std::ptr::eq(
        second.providers.get("demo").unwrap(),
        h.app().providers.get("demo").unwrap()
    ));
}

#[tokio::test]
async fn a_session_signed_out_before_a_reload_stays_signed_out_after_it() {
    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    let mut copy = h.browser();
    copy.cookies = b.cookies.clone();
    b.get(&h.url("/oauth2/sign_out")).await;
    // New session settings build a new store; the revocations carry over.
    h.reload(&[(
        &format!("secret = \"{SECRET}\""),
        &format!("secret = \"{SECRET}\"\nidle_timeout = \"2h\""),
    )])
    .await
    .unwrap();
    let resp = copy.get(&h.url("/private")).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
}

#[tokio::test]
async fn a_route_added_by_a_reload_takes_the_next_request() {
    let h = Harness::with(Setup {
        extra_toml: "[[rules]]\npath = \"/\"\npublic = true\n".into(),
        ..Setup::default()
    })
    .await;
    let mut anonymous = h.browser();
    assert_eq!(
        anonymous.get_json(&h.url("/b/page")).await.status,
        StatusCode::OK
    );
    // `/b/` now goes to an app that is down: portcullis answers 502 itself.
    let down = crate::support::closed_addr();
    h.reload(&[(
        "[[rules]]",
        &format!("[[upstreams]]\npath_prefix = \"/b/\"\nurl = \"http://{down}\"\n[[rules]]"),
    )])
    .await
    .unwrap();
    assert_eq!(
        anonymous.get_json(&h.url("/b/page")).await.status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        anonymous.get_json(&h.url("/a")).await.status,
        StatusCode::OK
    );
}

// === the real binary: SIGHUP and the file watch ===

mod process {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use http::StatusCode;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use portcullis::demo::idp::{DemoIdp, IdpOptions};
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio::time::{Instant, sleep};

    use crate::support::{Browser, SECRET, closed_addr, read_to_the_end, read_until};

    type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

    /// The senders of the downloads in flight: the test sends their last
    /// chunk (and ends them by dropping the sender) when it wants.
    type Downloads = Arc<Mutex<Vec<mpsc::Sender<Bytes>>>>;

    /// An app whose `/download` sends "first" at once and the rest only when
    /// the test says; anything else answers "app".
    async fn slow_app() -> (SocketAddr, Downloads) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let downloads: Downloads = Arc::default();
        let held = downloads.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let downloads = held.clone();
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let downloads = downloads.clone();
                    async move { Ok::<_, Infallible>(answer(req.uri().path(), &downloads).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (addr, downloads)
    }

    async fn answer(path: &str, downloads: &Downloads) -> http::Response<Body> {
        if path != "/download" {
            return http::Response::new(http_body_util::Full::new(Bytes::from("app")).boxed());
        }
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        tx.send(Bytes::from("first\n")).await.unwrap();
        downloads.lock().unwrap().push(tx);
        let frames = futures_util::stream::unfold(rx, |mut rx| async move {
            let chunk = rx.recv().await?;
            Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
        });
        http::Response::new(StreamBody::new(frames).boxed())
    }

    /// The portcullis binary, killed on drop; its stderr goes to a file.
    struct Portcullis {
        child: Child,
        addr: SocketAddr,
        config: PathBuf,
        stderr: PathBuf,
    }

    impl Drop for Portcullis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Portcullis {
        async fn start(name: &str, config: impl Fn(SocketAddr) -> String) -> Self {
            let addr = closed_addr();
            let dir = std::env::temp_dir()
                .join(format!("portcullis-reload-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("config.toml");
            std::fs::write(&path, config(addr)).unwrap();
            let stderr = dir.join("stderr.log");
            let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
                .args(["--config", path.to_str().unwrap(), "run"])
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr).unwrap())
                .spawn()
                .unwrap();
            let p = Self {
                child,
                addr,
                config: path,
                stderr,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(addr).await.is_err() {
                assert!(Instant::now() < deadline, "portcullis did not start");
                sleep(Duration::from_millis(20)).await;
            }
            p
        }

        fn write_config(&self, text: &str) {
            write_replacing(&self.config, text);
        }

        fn hangup(&self) {
            let sent = Command::new("kill")
                .args(["-HUP", &self.child.id().to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
        }

        fn log(&self) -> String {
            std::fs::read_to_string(&self.stderr).unwrap()
        }

        async fn status(&self, path: &str) -> StatusCode {
            Browser::new()
                .get(&format!("http://{}{path}", self.addr))
                .await
                .status
        }

        /// Waits (at most 10 s) until `path` answers `want`.
        async fn until_status(&self, path: &str, want: StatusCode) {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let got = self.status(path).await;
                if got == want {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{path} still answers {got}, not {want}; log:\n{}",
                    self.log()
                );
                sleep(Duration::from_millis(50)).await;
            }
        }

        async fn until_logged(&self, text: &str, times: usize) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.log().matches(text).count() < times {
                assert!(
                    Instant::now() < deadline,
                    "{text:?} not logged {times} times:\n{}",
                    self.log()
                );
                sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Replaces the file whole at once (as editors and Kubernetes do), so the
    /// watch never reads half of it.
    fn write_replacing(path: &Path, text: &str) {
        let next = path.with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, path).unwrap();
    }

    fn config(addr: SocketAddr, app: SocketAddr, issuer: &str, extra: &str) -> String {
        format!(
            "[server]\nlisten = \"{addr}\"\npublic_url = \"http://{addr}\"\n{extra}\n\
             [upstream]\nurl = \"http://{app}\"\n\
             [session]\nsecret = \"{SECRET}\"\n\
             [providers.demo]\nissuer = \"{issuer}\"\nclient_id = \"portcullis-demo\"\nclient_secret = \"demo-secret\"\n\
             [[rules]]\npath = \"/download\"\npublic = true\n"
        )
    }

    const OPEN: &str = "[[rules]]\npath = \"/open\"\npublic = true\n";

    #[tokio::test]
    async fn sighup_applies_a_valid_file_to_the_next_request_refuses_an_invalid_one_and_a_download_in_flight_completes()
     {
        let idp = DemoIdp::start(IdpOptions::default()).await.unwrap();
        let issuer = idp.issuer().as_str().trim_end_matches('/').to_owned();
        let (app, downloads) = slow_app().await;
        let p = Portcullis::start("sighup", |addr| config(addr, app, &issuer, "")).await;
        assert_eq!(p.status("/open").await, StatusCode::FOUND);

        // A download starts and is halfway.
        let mut download = TcpStream::connect(p.addr).await.unwrap();
        download
            .write_all(format!("GET /download HTTP/1.1\r\nHost: {}\r\n\r\n", p.addr).as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        read_until(&mut download, &mut got, "first").await;

        // A valid file: the next request gets it.
        let valid = config(p.addr, app, &issuer, "") + OPEN;
        p.write_config(&valid);
        p.hangup();
        p.until_status("/open", StatusCode::OK).await;
        p.until_logged("configuration reloaded", 1).await;

        // An invalid one: refused with its reason, and the last valid one stays.
        p.write_config(&valid.replace("[upstream]\n", "[upstream]\ntimeout = \"soon\"\n"));
        p.hangup();
        p.until_logged("configuration reload refused", 1).await;
        assert!(p.log().contains("upstream.timeout"), "{}", p.log());
        assert_eq!(p.status("/open").await, StatusCode::OK);

        // The download was never cut: it ends when the app ends it.
        let sender = downloads
            .lock()
            .unwrap()
            .pop()
            .expect("the download reached the app");
        sender.send(Bytes::from("last\n")).await.unwrap();
        drop(sender);
        assert!(
            read_to_the_end(&mut download, &mut got).await,
            "the download stalled"
        );
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains("last") && text.ends_with("0\r\n\r\n"),
            "{text}"
        );
        assert!(!p.log().contains("demo-secret"));
    }

    #[tokio::test]
    async fn watch_config_applies_a_changed_file_without_a_signal() {
        let idp = DemoIdp::start(IdpOptions::default()).await.unwrap();
        let issuer = idp.issuer().as_str().trim_end_matches('/').to_owned();
        let (app, _downloads) = slow_app().await;
        let watched = "watch_config = true";
        let p = Portcullis::start("watch", |addr| config(addr, app, &issuer, watched) + OPEN).await;
        assert_eq!(p.status("/open").await, StatusCode::OK);
        p.write_config(&config(p.addr, app, &issuer, watched));
        p.until_status("/open", StatusCode::FOUND).await;
        p.until_logged("configuration reloaded", 1).await;
        assert!(p.log().contains("file change"), "{}", p.log());
        // And a listener change is named as waiting for a restart.
        let moved = config(p.addr, app, &issuer, watched).replace(
            &format!("listen = \"{}\"", p.addr),
            "listen = \"127.0.0.1:1\"",
        );
        p.write_config(&(moved + OPEN));
        p.until_status("/open", StatusCode::OK).await;
        p.until_logged("server.listen changed", 1).await;
    }
}
