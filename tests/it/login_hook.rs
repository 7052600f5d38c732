//! The login hook (`[hooks] on_login`, issue #13 items 6 and 8) over real
//! sockets: a hook server that records what it got and answers as told,
//! the demo identity provider, and the echo upstream.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Method, StatusCode};
use portcullis::demo::idp::IdpOptions;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::fakes::{FakeServer, Recorded, Reply, json as json_reply, lock, reply};
use crate::metrics::{scrape, value};
use crate::support::{Browser, Harness, Resp, Setup, closed_addr};

const HOOK_SECRET: &str = "hook-secret-0123456789abcdef-0123456789";

/// A hook on 127.0.0.1 answering each call with the next queued reply (the
/// last one again when only one is left), recording every call.
struct Hook {
    server: FakeServer,
    replies: Arc<Mutex<VecDeque<Reply>>>,
}

impl Hook {
    async fn start(first: Reply) -> Self {
        let replies = Arc::new(Mutex::new(VecDeque::from([first])));
        let queue = replies.clone();
        let server = FakeServer::start(move |_: &Recorded| {
            let mut queue = lock(&queue);
            if queue.len() > 1 {
                queue.pop_front().unwrap()
            } else {
                clone_reply(queue.front().unwrap())
            }
        })
        .await;
        Hook { server, replies }
    }

    /// Answers `next` from now on.
    fn answer(&self, next: Reply) {
        let mut queue = lock(&self.replies);
        queue.clear();
        queue.push_back(next);
    }

    fn url(&self) -> String {
        format!("{}/portcullis/login", self.server.base())
    }

    fn calls(&self) -> Vec<Recorded> {
        self.server.requests()
    }
}

fn clone_reply(r: &Reply) -> Reply {
    let mut copy = reply(r.status(), "application/json", Bytes::new());
    *copy.headers_mut() = r.headers().clone();
    *copy.body_mut() = r.body().clone();
    copy
}

fn allow(claims: Value, groups: Value) -> Reply {
    json_reply(
        StatusCode::OK,
        json!({"allow": true, "claims": claims, "groups": groups}),
    )
}

/// portcullis with the login hook at `on_login` and `hooks` keys, the
/// `user_id` claim forwarded as `X-Forwarded-User-Id`, and `/hooked/`
/// open only to the group `from-hook`.
async fn harness_with(on_login: &str, hooks: &str, idp: IdpOptions, session: &str) -> Harness {
    Harness::with(Setup {
        idp,
        session_toml: session.into(),
        extra_toml: format!(
            r#"
[hooks]
on_login = "{on_login}"
secret = "{HOOK_SECRET}"
{hooks}

[headers]
"X-Forwarded-User" = "sub"
"X-Forwarded-Email" = "email"
"X-Forwarded-Groups" = "groups"
"X-Forwarded-User-Id" = "user_id"

[[rules]]
path = "/hooked/"
groups = ["from-hook"]
"#
        ),
        ..Setup::default()
    })
    .await
}

async fn harness(on_login: &str, hooks: &str) -> Harness {
    harness_with(on_login, hooks, IdpOptions::default(), "").await
}

/// The whole sign-in as `sub`, the callback sent with a `User-Agent` and an
/// `X-Request-Id`; the callback's response.
async fn sign_in(b: &mut Browser, h: &Harness, sub: &str) -> Resp {
    let authorize = b.start(h, "/").await;
    let callback = b.authorize(&authorize, sub).await;
    b.request(
        Method::GET,
        &callback,
        &[
            ("accept", "text/html"),
            ("user-agent", "hook-test/1.0"),
            ("x-request-id", "req-42"),
        ],
        Bytes::new(),
    )
    .await
}

/// The sign-in was refused with `status`: no session cookie was set, and
/// the browser is still not signed in.
async fn refused(b: &mut Browser, h: &Harness, resp: &Resp, status: StatusCode) {
    assert_eq!(resp.status, status, "{}", resp.text());
    assert!(
        resp.set_cookies()
            .iter()
            .all(|c| c.contains("_flow_") || !c.starts_with("_portcullis")),
        "only the flow cookie is cleared: {:?}",
        resp.set_cookies()
    );
    assert!(b.session_cookies().is_empty(), "no session");
    let resp = b.get_json(&h.url("/whoami")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.text());
}

#[tokio::test]
async fn a_hook_refusal_shows_its_message_escaped_and_makes_no_session() {
    let hook = Hook::start(json_reply(
        StatusCode::OK,
        json!({"allow": false, "message": "No <script>alert(1)</script>\nhere", "status": 451}),
    ))
    .await;
    let h = harness(&hook.url(), "").await;
    let mut b = h.browser();
    let resp = sign_in(&mut b, &h, "ada").await;
    refused(&mut b, &h, &resp, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS).await;
    let page = resp.text();
    assert!(
        page.contains("No &lt;script&gt;alert(1)&lt;/script&gt;here"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"), "{page}");

    // A status that is not a client error becomes 403.
    hook.answer(json_reply(
        StatusCode::OK,
        json!({"allow": false, "status": 200}),
    ));
    let resp = sign_in(&mut b, &h, "ada").await;
    refused(&mut b, &h, &resp, StatusCode::FORBIDDEN).await;
    assert!(
        resp.text()
            .contains("The application refused this sign-in.")
    );
    let metrics = scrape(&h).await;
    assert_eq!(
        value(&metrics, "portcullis_login_hook_total{result=\"denied\"}"),
        2.0
    );
}

#[tokio::test]
async fn hook_claims_and_groups_reach_the_upstream_and_satisfy_rules() {
    let hook = Hook::start(allow(json!({"user_id": "42"}), json!(["from-hook"]))).await;
    let h = harness(&hook.url(), "").await;
    let mut b = h.browser();
    let resp = sign_in(&mut b, &h, "grace").await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());

    let resp = b.get_json(&h.url("/hooked/page")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(
        resp.upstream_header("x-forwarded-user-id").as_deref(),
        Some("42")
    );
    assert_eq!(
        resp.upstream_header("x-forwarded-groups").as_deref(),
        Some("engineering,from-hook")
    );

    // What the hook was sent, and that it can trust it.
    let calls = hook.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, Method::POST);
    assert_eq!(call.path, "/portcullis/login");
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(call.header("x-request-id"), Some("req-42"));
    assert!(
        signature_verifies(call.header("x-portcullis-signature").unwrap(), &call.body),
        "{:?}",
        call.header("x-portcullis-signature")
    );
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["event"], "sign_in");
    assert_eq!(sent["provider"], "demo");
    assert_eq!(sent["sub"], "grace");
    assert_eq!(sent["email"], "grace@example.com");
    assert_eq!(sent["email_verified"], true);
    assert_eq!(sent["groups"], json!(["engineering"]));
    assert_eq!(sent["claims"]["sub"], "grace");
    assert_eq!(sent["ip"], "127.0.0.1");
    assert_eq!(sent["user_agent"], "hook-test/1.0");
    let metrics = scrape(&h).await;
    assert_eq!(
        value(&metrics, "portcullis_login_hook_total{result=\"allowed\"}"),
        1.0
    );
}

/// Checks the signature as the app would: HMAC-SHA256 over `<t>.<body>`,
/// computed here independently of portcullis.
fn signature_verifies(header: &str, body: &[u8]) -> bool {
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .expect("t=...,v1=...");
    let age = portcullis::now_unix().abs_diff(t.parse().unwrap());
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    age < 60 && expected == v1
}

#[tokio::test]
async fn a_failing_hook_refuses_by_default_and_on_error_allow_signs_in_without_additions() {
    let closed = format!("http://{}/hook", closed_addr());
    let h = harness(&closed, "").await;
    let mut b = h.browser();
    let resp = sign_in(&mut b, &h, "ada").await;
    refused(&mut b, &h, &resp, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(resp.text().contains("The sign-in could not be completed"));
    assert!(!resp.text().contains(&closed[7..]), "names no address");

    let hook = Hook::start(json_reply(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"allow": true}),
    ))
    .await;
    let h = harness(&hook.url(), "").await;
    let mut b = h.browser();
    let resp = sign_in(&mut b, &h, "ada").await;
    refused(&mut b, &h, &resp, StatusCode::SERVICE_UNAVAILABLE).await;

    let h = harness(&closed, "on_error = \"allow\"").await;
    let mut b = h.browser();
    let resp = sign_in(&mut b, &h, "ada").await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let resp = b.get_json(&h.url("/whoami")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(
        resp.upstream_header("x-forwarded-user").as_deref(),
        Some("ada")
    );
    assert_eq!(resp.upstream_header("x-forwarded-user-id"), None);
}

#[tokio::test]
async fn a_hook_that_never_answers_fails_within_its_timeout() {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let h = harness(&format!("http://{addr}/hook"), "timeout = \"300ms\"").await;
    let mut b = h.browser();
    let resp = tokio::time::timeout(Duration::from_secs(10), sign_in(&mut b, &h, "ada"))
        .await
        .expect("the sign-in ends");
    refused(&mut b, &h, &resp, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn garbage_answers_are_failures() {
    let huge = format!(
        r#"{{"allow": true, "padding": "{}"}}"#,
        "A".repeat(70 * 1024)
    );
    let garbage = [
        reply(StatusCode::OK, "text/html", "<html>welcome</html>"),
        reply(StatusCode::OK, "application/json", "[true]"),
        reply(StatusCode::OK, "application/json", r#"{"claims": {}}"#),
        reply(StatusCode::OK, "application/json", r#"{"allow": "yes"}"#),
        reply(
            StatusCode::OK,
            "application/json",
            r#"{"allow": true, "claims": ["user_id"]}"#,
        ),
        reply(
            StatusCode::OK,
            "application/json",
            r#"{"allow": true, "claims": {"sub": "admin"}}"#,
        ),
        reply(
            StatusCode::OK,
            "application/json",
            r#"{"allow": true, "groups": "admins"}"#,
        ),
        reply(StatusCode::OK, "application/json", huge),
    ];
    let count = garbage.len();
    let hook = Hook::start(reply(StatusCode::OK, "application/json", "")).await;
    let h = harness(&hook.url(), "").await;
    for (i, answer) in garbage.into_iter().enumerate() {
        hook.answer(answer);
        let mut b = h.browser();
        let resp = sign_in(&mut b, &h, "ada").await;
        assert_eq!(
            resp.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "answer {i}: {}",
            resp.text()
        );
        refused(&mut b, &h, &resp, StatusCode::SERVICE_UNAVAILABLE).await;
    }
    let metrics = scrape(&h).await;
    assert_eq!(
        value(&metrics, "portcullis_login_hook_total{result=\"error\"}"),
        count as f64
    );
    assert_eq!(
        value(
            &metrics,
            "portcullis_sign_ins_total{provider=\"demo\",result=\"hook_error\"}"
        ),
        count as f64
    );
}

#[tokio::test]
async fn a_hook_on_a_unix_socket_is_asked() {
    let dir = std::env::temp_dir().join(format!("portcullis-hook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("hook.sock");
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let _server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            lock(&seen).push(body);
                            Ok::<_, std::convert::Infallible>(allow(
                                json!({"user_id": "7"}),
                                json!([]),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let h = harness(&format!("unix:{}", socket.display()), "").await;
    let mut b = h.browser();
    let resp = sign_in(&mut b, &h, "ada").await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let resp = b.get_json(&h.url("/whoami")).await;
    assert_eq!(
        resp.upstream_header("x-forwarded-user-id").as_deref(),
        Some("7")
    );
    let sent: Value = serde_json::from_slice(&lock(&bodies)[0]).unwrap();
    assert_eq!(sent["sub"], "ada");
}

// === at refresh ===

/// The demo provider's access tokens last 61 s: with `refresh_before =
/// "60s"` a session is due a second after sign-in.
async fn refreshing(on_login: &str, hooks: &str) -> Harness {
    harness_with(
        on_login,
        hooks,
        IdpOptions {
            access_token_lifetime: 61,
            ..IdpOptions::default()
        },
        "refresh_before = \"60s\"",
    )
    .await
}

#[tokio::test]
async fn what_the_hook_added_survives_a_refresh_without_asking_it_again() {
    let hook = Hook::start(allow(json!({"user_id": "42"}), json!(["from-hook"]))).await;
    let h = refreshing(&hook.url(), "").await;
    let mut b = h.browser();
    assert_eq!(sign_in(&mut b, &h, "ada").await.status, StatusCode::FOUND);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let resp = b.get_json(&h.url("/hooked/page")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(h.idp.refresh_count(), 1, "refreshed");
    assert!(
        resp.set_cookies()
            .iter()
            .any(|c| c.starts_with("_portcullis=")),
        "the refreshed session is written"
    );
    assert_eq!(
        resp.upstream_header("x-forwarded-user-id").as_deref(),
        Some("42")
    );
    // The refreshed cookie carries them too.
    let resp = b.get_json(&h.url("/hooked/page")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(
        resp.upstream_header("x-forwarded-user-id").as_deref(),
        Some("42")
    );
    assert_eq!(hook.calls().len(), 1, "asked at sign-in only");
}

#[tokio::test]
async fn with_on_refresh_a_hook_refusal_at_refresh_ends_the_session() {
    let hook = Hook::start(allow(json!({"user_id": "42"}), json!([]))).await;
    let h = refreshing(&hook.url(), "on_refresh = true").await;
    let mut b = h.browser();
    assert_eq!(sign_in(&mut b, &h, "ada").await.status, StatusCode::FOUND);
    hook.answer(json_reply(StatusCode::OK, json!({"allow": false})));
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let resp = b.get_json(&h.url("/whoami")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.text());
    assert_eq!(h.idp.refresh_count(), 1);
    assert!(
        b.session_cookies().is_empty(),
        "the session cookie is deleted"
    );
    let calls = hook.calls();
    assert_eq!(calls.len(), 2);
    let sent: Value = serde_json::from_slice(&calls[1].body).unwrap();
    assert_eq!(sent["event"], "refresh");
}

// === the example app ===

/// `examples/login-hook/app.py`, stopped when dropped.
struct ExampleApp(Child);

impl Drop for ExampleApp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("python3"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("REQUIRE_PROXIES").is_none(),
            "REQUIRE_PROXIES is set but python3 is not installed (apt-get install python3)"
        );
        eprintln!("skipped: python3 is not installed (apt-get install python3)");
    }
    found
}

fn example_app(python: &Path, database: &Path, port: u16, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(python);
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/login-hook/app.py"
        ))
        .env("HOOK_SECRET", HOOK_SECRET)
        .env("DATABASE", database)
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .envs(env.iter().copied())
        .stdout(Stdio::null());
    command
}

async fn start_example(
    python: &Path,
    database: &Path,
    port: u16,
    env: &[(&str, &str)],
) -> ExampleApp {
    let app = ExampleApp(example_app(python, database, port, env).spawn().unwrap());
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return app;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the example app did not start listening");
}

#[tokio::test]
async fn the_example_app_gives_each_user_a_local_id_and_can_be_invite_only() {
    let Some(python) = python() else { return };
    let dir = std::env::temp_dir().join(format!("portcullis-hook-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let database = dir.join("users.db");
    let _ = std::fs::remove_file(&database);
    let port = closed_addr().port();
    let on_login = format!("http://127.0.0.1:{port}/portcullis/login");
    let h = harness(&on_login, "").await;
    let user_id = |resp: Resp| {
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        resp.upstream_header("x-forwarded-user-id")
    };

    let app = start_example(&python, &database, port, &[]).await;
    for _ in 0..2 {
        let mut b = h.browser();
        assert_eq!(sign_in(&mut b, &h, "ada").await.status, StatusCode::FOUND);
        let resp = b.get_json(&h.url("/whoami")).await;
        assert_eq!(user_id(resp).as_deref(), Some("1"), "created, then found");
    }
    drop(app);

    // Invite-only: Grace is invited by email and linked on her first
    // sign-in; Eve, a stranger, is refused with the app's message.
    let invited = example_app(&python, &database, port, &[])
        .args(["invite", "grace@example.com"])
        .status()
        .unwrap();
    assert!(invited.success());
    let _app = start_example(&python, &database, port, &[("INVITE_ONLY", "1")]).await;
    let mut b = h.browser();
    assert_eq!(sign_in(&mut b, &h, "grace").await.status, StatusCode::FOUND);
    let resp = b.get_json(&h.url("/whoami")).await;
    assert_eq!(user_id(resp).as_deref(), Some("2"));
    let mut b = h.browser();
    let resp = sign_in(&mut b, &h, "eve").await;
    refused(&mut b, &h, &resp, StatusCode::FORBIDDEN).await;
    assert!(
        resp.text().contains("This site is invite-only"),
        "{}",
        resp.text()
    );
}

#[tokio::test]
async fn a_reload_takes_the_new_hook_at_once() {
    let old = Hook::start(allow(json!({"user_id": "old"}), json!([]))).await;
    let new = Hook::start(allow(json!({"user_id": "new"}), json!([]))).await;
    let h = harness(&old.url(), "").await;
    h.reload(&[(&old.url(), &new.url())]).await.unwrap();
    let mut b = h.browser();
    assert_eq!(sign_in(&mut b, &h, "ada").await.status, StatusCode::FOUND);
    let resp = b.get_json(&h.url("/whoami")).await;
    assert_eq!(
        resp.upstream_header("x-forwarded-user-id").as_deref(),
        Some("new")
    );
    assert!(old.calls().is_empty());
}
