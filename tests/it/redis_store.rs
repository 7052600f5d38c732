//! `session.store = "redis"` with two portcullis replicas sharing one identity
//! provider, one upstream and one real redis-server (README "Sessions in
//! Redis"). Skipped, with a note, where redis-server is not installed, unless
//! `REQUIRE_REDIS` is set.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use portcullis::config::{SameSite, Secret, SessionConfig, StoreConfig};
use portcullis::session::SessionKeys;
use tokio::time::{Instant, sleep};

use crate::redis_server::RedisServer;
use crate::support::{Browser, Harness, Replica, SECRET, Setup};

/// Long enough for anything that should happen; polls end once it has.
const DEADLINE: Duration = Duration::from_secs(10);

/// Replica A (a [`Harness`]) and replica B, both on `server`.
async fn replicas(server: &RedisServer) -> (Harness, Replica) {
    let a = Harness::with(Setup {
        session_toml: format!("store = \"redis\"\nredis_url = \"{}\"", server.url()),
        ..Setup::default()
    })
    .await;
    let b = a.replica().await;
    (a, b)
}

/// A browser with the same cookies: a copy of a stolen or shared cookie.
fn copy_of(browser: &Browser) -> Browser {
    let mut copy = Browser::new();
    copy.cookies = browser.cookies.clone();
    copy
}

/// Polls `GET url` until its status is `want`; returns how long that took.
async fn until_status(browser: &mut Browser, url: &str, want: StatusCode) -> Duration {
    let start = Instant::now();
    loop {
        let status = browser.get(url).await.status;
        if status == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{url}: still {status}, not {want}, after {DEADLINE:?}"
        );
        sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_session_made_on_one_replica_is_used_and_ended_on_the_other() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = replicas(&server).await;
    let mut browser = a.signed_in("ada").await;
    let on_b = browser.get_json(&b.url("/")).await;
    assert_eq!(on_b.status, StatusCode::OK, "{}", on_b.text());
    assert_eq!(
        on_b.upstream_header("x-forwarded-user").as_deref(),
        Some("ada")
    );
    // A has it cached now; copies of the cookie keep using A (and B).
    let mut on_a = copy_of(&browser);
    let mut on_b = copy_of(&browser);
    assert_eq!(on_a.get(&a.url("/")).await.status, StatusCode::OK);

    let out = browser.get(&b.url("/oauth2/sign_out")).await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text());
    assert!(browser.session_cookies().is_empty(), "B deletes the cookie");
    // A hears of it through Redis and refuses the copied cookie.
    let took = until_status(&mut on_a, &a.url("/"), StatusCode::FOUND).await;
    eprintln!("replica A refused the signed-out session after {took:?}");
    assert_eq!(on_b.get(&b.url("/")).await.status, StatusCode::FOUND);
}

#[tokio::test]
async fn the_cookie_holds_only_a_small_sealed_handle() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, _b) = replicas(&server).await;
    let browser = a.signed_in("ada").await;
    let cookies = browser.session_cookies();
    assert_eq!(cookies.len(), 1, "one cookie, never chunks: {cookies:?}");
    let (name, value) = cookies[0];
    // version, nonce, a 43-byte id, tag: 72 bytes, 96 in base64url.
    assert_eq!(value.len(), 96, "{value}");
    assert!(
        URL_SAFE_NO_PAD.decode(value).unwrap().len() < 100,
        "no token fits in it"
    );
    let keys = SessionKeys::new(&SessionConfig {
        secret: Secret::new(SECRET),
        previous_secrets: Vec::new(),
        cookie_name: name.clone(),
        lifetime: Duration::from_secs(3600),
        idle_timeout: None,
        refresh_before: Duration::from_secs(60),
        refresh_interval: None,
        secure: false,
        same_site: SameSite::Lax,
        domain: None,
        store: StoreConfig::Cookie,
    });
    // Not a cookie-store session: sealed for the Redis handle only.
    assert!(keys.open(name, value).is_err());
    let id = keys.open(&format!("{name} redis handle"), value).unwrap();
    assert_eq!(id.len(), 43, "the plaintext is the session id alone");
}

#[tokio::test]
async fn redis_down_means_503_for_uncached_sessions_and_service_resumes_after() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let (a, b) = replicas(&server).await;
    let mut browser = a.signed_in("ada").await;
    assert_eq!(browser.get(&a.url("/")).await.status, StatusCode::OK);
    // A Redis with persistence: it comes back with the session.
    server.snapshot();
    server.stop();

    let mut ready = Browser::new();
    until_status(
        &mut ready,
        &b.url("/oauth2/readyz"),
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    let readyz = ready.get(&b.url("/oauth2/readyz")).await;
    assert!(readyz.text().contains("Redis"), "{}", readyz.text());
    // B has not cached the session: a page, and JSON, say 503.
    let page = browser.get(&b.url("/")).await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.text()
    );
    assert!(
        page.text().contains("Sessions are unavailable"),
        "{}",
        page.text()
    );
    let json = browser.get_json(&b.url("/")).await;
    assert_eq!(json.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        json.json()["error"],
        "session_store_unavailable",
        "{}",
        json.text()
    );
    assert!(
        !browser.session_cookies().is_empty(),
        "an outage signs nobody out"
    );
    // A has it cached: it goes on serving it for a while.
    assert_eq!(browser.get(&a.url("/")).await.status, StatusCode::OK);
    // A new sign-in cannot be stored.
    let mut newcomer = Browser::new();
    let refused = newcomer.sign_in(&a, "grace", "/").await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text()
    );

    server.restart();
    // Requests during the comeback get 200 or 503, never anything else.
    let start = Instant::now();
    loop {
        let status = browser.get(&b.url("/")).await.status;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(start.elapsed() < DEADLINE, "B did not come back");
        sleep(Duration::from_millis(10)).await;
    }
    for replica in [&a.base, &b.base] {
        let readyz = format!("{replica}/oauth2/readyz");
        until_status(&mut ready, &readyz, StatusCode::OK).await;
    }
    assert_eq!(browser.get(&a.url("/")).await.status, StatusCode::OK);
    let welcome = newcomer.sign_in(&a, "grace", "/").await;
    assert_eq!(welcome.status, StatusCode::FOUND, "{}", welcome.text());
    assert_eq!(newcomer.get(&b.url("/")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn sign_out_everywhere_ends_the_users_other_browsers_on_every_replica() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = replicas(&server).await;
    let mut laptop = a.signed_in("ada").await;
    let mut phone = a.signed_in("ada").await;
    let mut grace = a.signed_in("grace").await;
    // Both replicas have the phone's and grace's sessions cached.
    for browser in [&mut phone, &mut grace] {
        assert_eq!(browser.get(&a.url("/")).await.status, StatusCode::OK);
        assert_eq!(browser.get(&b.url("/")).await.status, StatusCode::OK);
    }
    let mut phone_on_b = copy_of(&phone);

    let out = laptop.get(&b.url("/oauth2/sign_out?everywhere=1")).await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text());
    until_status(&mut phone, &a.url("/"), StatusCode::FOUND).await;
    until_status(&mut phone_on_b, &b.url("/"), StatusCode::FOUND).await;
    assert_eq!(grace.get(&a.url("/")).await.status, StatusCode::OK);
    assert_eq!(grace.get(&b.url("/")).await.status, StatusCode::OK);
}

/// An outage is logged once when it starts, naming where Redis is and what to
/// check, and once when it ends; the password never shows, even at debug level.
#[test]
fn an_outage_is_logged_once_each_way_and_never_with_the_password() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    let Some(mut server) = RedisServer::start_with_password("hunter2-redis-pw") else {
        return;
    };
    server.stop();
    let dir = std::env::temp_dir().join(format!("portcullis-redis-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[session]\nsecret = \"{SECRET}\"\nstore = \"redis\"\nredis_url = \"{}\"\n[providers.corp]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"c\"\n",
            server.url()
        ),
    )
    .unwrap();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "debug")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start portcullis"),
    );
    let (lines, received) = mpsc::channel();
    let stderr = BufReader::new(child.0.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut log = Vec::new();
    let wait_for = |what: &str, log: &mut Vec<String>| {
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = received
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with {what:?}:\n{}", log.join("\n")));
            let found = line.contains(what);
            log.push(line);
            if found {
                return;
            }
        }
    };
    wait_for("Redis is unreachable", &mut log);
    // Reconnection attempts go on (every half second) meanwhile: none logs again.
    std::thread::sleep(Duration::from_millis(1500));
    server.restart();
    wait_for("Redis is reachable again", &mut log);
    drop(child);
    log.extend(received.try_iter());
    std::fs::remove_dir_all(&dir).unwrap();

    let all = log.join("\n");
    assert!(
        !all.contains("hunter2"),
        "the password is in the log:\n{all}"
    );
    let outages: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("Redis is unreachable"))
        .collect();
    assert_eq!(outages.len(), 1, "{all}");
    assert!(
        outages[0].contains(&server.addr.to_string()),
        "{}",
        outages[0]
    );
    assert!(outages[0].contains("session.redis_url"), "{}", outages[0]);
}

/// A child process killed (and reaped) however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Hot reload (#12 item 3) with the Redis store: new header settings open a
/// new store; the session in Redis goes on, with the new headers.
#[tokio::test]
async fn a_reload_keeps_redis_sessions_and_applies_new_headers() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let h = Harness::with(Setup {
        session_toml: format!("store = \"redis\"\nredis_url = \"{}\"", server.url()),
        extra_toml: "[headers]\nX-Who = \"sub\"\n".into(),
        ..Setup::default()
    })
    .await;
    let mut b = h.signed_in("ada").await;
    assert_eq!(b.get_json(&h.url("/private")).await.status, StatusCode::OK);
    h.reload(&[("X-Who = \"sub\"", "X-Who = \"sub\"\nX-Mail = \"email\"")])
        .await
        .unwrap();
    let after = b.get_json(&h.url("/private")).await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text());
    assert_eq!(after.upstream_header("x-who").as_deref(), Some("ada"));
    assert_eq!(
        after.upstream_header("x-mail").as_deref(),
        Some("ada@example.com")
    );
}
