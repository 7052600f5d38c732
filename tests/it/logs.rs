//! Issue #12, item 2: the access log, the JSON format, and what is never
//! logged. The log is captured from the real subscriber (`portcullis::log`)
//! into a buffer; a current-thread runtime keeps every task of the test
//! (portcullis, the identity provider, the upstream) on the thread that
//! captures.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use portcullis::config::LogFormat;
use portcullis::demo::idp::IdpOptions;
use serde_json::Value;
use tracing_subscriber::EnvFilter;

use crate::support::{Harness, Setup, param};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Captures what `filter` lets through, as `format`, until the guard drops.
    fn start(format: LogFormat, filter: &str) -> (Self, tracing::subscriber::DefaultGuard) {
        let captured = Self::default();
        let writer = captured.clone();
        let subscriber =
            portcullis::log::subscriber(format, EnvFilter::new(filter), false, move || {
                writer.clone()
            });
        let guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        (captured, guard)
    }

    /// Other tests run on other threads, without this subscriber: a callsite
    /// they register while this one is being set can cache "never". Rebuilt
    /// once the harness is up, before the requests that matter.
    fn settle() {
        tracing::callsite::rebuild_interest_cache();
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Every line, each of which must be one JSON object.
    fn json_lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

#[tokio::test]
async fn a_proxied_request_has_one_access_line_with_its_fields_and_no_query() {
    let (log, _guard) = Captured::start(LogFormat::Json, "info");
    let h = Harness::start().await;
    Captured::settle();
    let mut b = h.signed_in("ada").await;
    let resp = b.get(&h.url("/report?token=QUERY-VALUE-1")).await;
    assert_eq!(resp.status, StatusCode::OK);

    let lines = log.json_lines();
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "portcullis::access" && l["path"] == "/report")
        .collect();
    assert_eq!(access.len(), 1, "{lines:#?}");
    let line = access[0];
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status"], 200);
    assert_eq!(line["outcome"], "proxied");
    assert_eq!(line["user"], "ada");
    assert_eq!(line["provider"], "demo");
    assert_eq!(line["client"], "127.0.0.1");
    assert!(line["duration_ms"].as_f64().is_some(), "{line}");
    assert!(line["upstream_ms"].as_f64().is_some(), "{line}");
    assert!(!log.text().contains("QUERY-VALUE-1"));
    // The sign-in is an audit event.
    assert!(
        lines
            .iter()
            .any(|l| l["target"] == "portcullis::audit" && l["message"] == "signed in"),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn access_false_turns_the_access_log_off() {
    let (log, _guard) = Captured::start(LogFormat::Text, "info");
    let h = Harness::with(Setup {
        extra_toml: "[log]\naccess = false\n".into(),
        ..Setup::default()
    })
    .await;
    Captured::settle();
    let resp = h.browser().get_json(&h.url("/x")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(!log.text().contains("portcullis::access"), "{}", log.text());
}

#[tokio::test]
async fn no_secret_token_code_cookie_or_query_value_is_ever_logged() {
    let (log, _guard) = Captured::start(LogFormat::Json, "debug");
    let h = Harness::with(Setup {
        // Due for a refresh a second after sign-in (see `refresh.rs`).
        idp: IdpOptions {
            access_token_lifetime: 61,
            ..IdpOptions::default()
        },
        upstream_toml: "pass_access_token = true".into(),
        session_toml: "refresh_before = \"60s\"".into(),
        ..Setup::default()
    })
    .await;
    Captured::settle();
    let mut b = h.browser();
    let authorize = b.start(&h, "/after?next=QUERY-VALUE-2").await;
    let callback = b.authorize(&authorize, "ada").await;
    let code = param(&callback, "code").expect("a code");
    let state = param(&callback, "state").expect("a state");
    assert_eq!(b.get(&callback).await.status, StatusCode::FOUND);
    let mut cookies: Vec<String> = b.cookies.values().cloned().collect();
    // Sign-out revokes them: taken while the provider still has them.
    let mut refresh_tokens = h.idp.refresh_tokens();
    let first = b.get_json(&h.url("/whoami?key=QUERY-VALUE-3")).await;
    let first_token = first.upstream_header("x-forwarded-access-token").unwrap();

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let refreshed = b.get_json(&h.url("/whoami")).await;
    assert_eq!(refreshed.status, StatusCode::OK);
    let second_token = refreshed
        .upstream_header("x-forwarded-access-token")
        .unwrap();
    assert_ne!(first_token, second_token, "refreshed");
    cookies.extend(b.cookies.values().cloned());
    refresh_tokens.extend(h.idp.refresh_tokens());
    let signed_out = b.get(&h.url("/oauth2/sign_out")).await;
    assert!(signed_out.status.is_redirection() || signed_out.status == StatusCode::OK);

    let text = log.text();
    assert!(text.contains("signed out"), "the flow ran: {text}");
    let mut secrets = vec![
        crate::support::SECRET.to_owned(),
        "demo-secret".to_owned(),
        code,
        state,
        first_token,
        second_token,
        "QUERY-VALUE-2".to_owned(),
        "QUERY-VALUE-3".to_owned(),
    ];
    secrets.extend(refresh_tokens);
    secrets.extend(cookies.into_iter().filter(|c| c.len() > 16));
    assert!(secrets.len() >= 11, "{secrets:?}");
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "{secret} is in the log");
    }
    // Every line is one JSON object.
    assert!(!log.json_lines().is_empty());
}

/// A `sub` (the provider's) and a path (the client's) that try to end the line
/// and start a forged one, and to break out of their quotes.
const FORGED_SUB: &str = "mal\"lory\n2026-12-04T00:00:00.000000Z  INFO portcullis::access: request method=GET path=\"/admin\" user=\"ada\"\r\u{1}\u{1b}[2J\\";
const ODD_PATH: &str = "/a\"b\\c{d}é";

/// Signs in as [`FORGED_SUB`] and sends `GET ODD_PATH` byte for byte (a
/// client library would percent-encode it); returns the log.
async fn log_of_odd_values(format: LogFormat) -> Captured {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (log, guard) = Captured::start(format, "info");
    let mut idp = IdpOptions::default();
    let mut mallory = idp.users[0].clone();
    mallory.sub = FORGED_SUB.into();
    idp.users.push(mallory);
    let h = Harness::with(Setup {
        idp,
        ..Setup::default()
    })
    .await;
    Captured::settle();
    let mut b = h.browser();
    let hint = utf8_percent_encode(FORGED_SUB, NON_ALPHANUMERIC).to_string();
    assert_eq!(b.sign_in(&h, &hint, "/").await.status, StatusCode::FOUND);
    let cookies: Vec<String> = b.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();

    let mut conn = tokio::net::TcpStream::connect(h.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "GET {ODD_PATH} HTTP/1.1\r\nHost: x\r\nCookie: {}\r\nConnection: close\r\n\r\n",
        cookies.join("; ")
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(guard);
    log
}

#[tokio::test]
async fn a_forged_sub_or_odd_path_stays_one_text_line_with_its_values_quoted() {
    let log = log_of_odd_values(LogFormat::Text).await;
    let text = log.text();
    let access: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" INFO portcullis::access: "))
        .collect();
    let odd = format!(" path={ODD_PATH:?} ");
    let line = access
        .iter()
        .find(|l| l.contains(&odd))
        .unwrap_or_else(|| panic!("{odd} in {text}"));
    assert!(line.contains(&format!(" user={FORGED_SUB:?} ")), "{line}");
    assert!(line.ends_with(" client=127.0.0.1"), "{line}");
    assert!(!line.contains('\u{1b}') && !line.contains('\r'), "{line}");
    // The audit events quote `sub` too: the forged line never starts a line.
    let signed_in = text
        .lines()
        .find(|l| l.contains(" portcullis::audit: signed in"))
        .unwrap_or_else(|| panic!("no sign-in audit line in {text}"));
    assert!(
        signed_in.contains(&format!("sub={FORGED_SUB:?}")),
        "{signed_in}"
    );
    for forged in FORGED_SUB.lines().skip(1) {
        assert!(
            !text.lines().any(|l| l.starts_with(forged)),
            "a forged line: {forged}\n{text}"
        );
    }
}

#[tokio::test]
async fn a_forged_sub_or_odd_path_stays_one_json_object_with_its_values() {
    let log = log_of_odd_values(LogFormat::Json).await;
    // json_lines: every line is one JSON object.
    let lines = log.json_lines();
    let line = lines
        .iter()
        .find(|l| l["target"] == "portcullis::access" && l["path"] == ODD_PATH)
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(line["user"], FORGED_SUB);
    assert_eq!(line["status"], 200);
}

#[tokio::test]
async fn a_bearer_request_is_logged_as_its_user_and_a_refused_token_by_reason_only() {
    let (log, _guard) = Captured::start(LogFormat::Json, "info");
    let h = Harness::with(Setup {
        extra_toml: "[access]\nbearer_tokens = true\n".into(),
        ..Setup::default()
    })
    .await;
    let claims = h.idp.access_token_claims("ada");
    let good = h
        .idp
        .sign_access_token(&claims, portcullis::demo::idp::JwtSigning::Current)
        .await;
    let bad = h
        .idp
        .sign_access_token(&claims, portcullis::demo::idp::JwtSigning::NextKey)
        .await;
    // Registers the audit callsite on this thread, under this subscriber.
    h.browser()
        .request(
            http::Method::GET,
            &h.url("/warm-up"),
            &[("authorization", "Bearer warm-up")],
            Default::default(),
        )
        .await;
    Captured::settle();
    for (token, path) in [(&good, "/good"), (&bad, "/bad")] {
        h.browser()
            .request(
                http::Method::GET,
                &h.url(path),
                &[("authorization", &format!("Bearer {token}"))],
                Default::default(),
            )
            .await;
    }
    let lines = log.json_lines();
    let access = |path: &str| {
        lines
            .iter()
            .find(|l| l["target"] == "portcullis::access" && l["path"] == path)
            .unwrap_or_else(|| panic!("{lines:#?}"))
    };
    assert_eq!(access("/good")["status"], 200);
    assert_eq!(access("/good")["user"], "ada");
    assert_eq!(access("/good")["provider"], "demo");
    assert_eq!(access("/bad")["status"], 401);
    // The bad token's refusal (the warm-up's says it is no JWT).
    let refused: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "portcullis::audit" && l["message"] == "bearer token refused")
        .filter(|l| l["reason"].as_str().is_some_and(|r| r.contains("key")))
        .collect();
    assert_eq!(refused.len(), 1, "{lines:#?}");
    let text = log.text();
    let signature = |t: &str| t.rsplit('.').next().unwrap().to_owned();
    assert!(!text.contains(&signature(&good)) && !text.contains(&signature(&bad)));
}
