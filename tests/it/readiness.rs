//! Liveness and readiness (DESIGN §3): `/oauth2/healthz` answers 200 from the
//! start, `/oauth2/readyz` only once every provider's metadata is loaded.

use std::time::{Duration, Instant};

use http::StatusCode;

use crate::support::{Harness, Setup, closed_addr};

#[tokio::test]
async fn not_ready_while_one_provider_is_unreachable_but_alive() {
    let providers = format!(
        r#"
[providers.demo]
issuer = "{{demo_idp}}"
client_id = "portcullis-demo"
client_secret = "demo-secret"

[providers.down]
issuer = "http://127.0.0.1:{port}"
client_id = "portcullis-demo"
client_secret = "demo-secret"
"#,
        port = closed_addr().port()
    );
    let h = Harness::with(Setup {
        providers_toml: Some(providers),
        no_ready_wait: true,
        ..Setup::default()
    })
    .await;
    let mut b = h.browser();

    // The demo provider loads its metadata: sign-in with it can start.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let start = b.get(&h.url("/oauth2/start/demo?rd=%2F")).await;
        if start.status == StatusCode::FOUND {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo provider never became ready: {} {}",
            start.status,
            start.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The other one never does: not ready, yet alive.
    let ready = b.get(&h.url("/oauth2/readyz")).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text()
    );
    let health = b.get(&h.url("/oauth2/healthz")).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text());
}
