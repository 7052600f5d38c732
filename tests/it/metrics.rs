//! Issue #12, item 1: the counters on the metrics listener move by exactly
//! what real traffic did.

use http::{Method, StatusCode};

use crate::support::{Browser, Harness, Setup, closed_addr};

/// `GET /metrics` on `h`'s metrics listener, and the status of `path` there.
pub(crate) async fn scrape(h: &Harness) -> String {
    let resp = Browser::new()
        .get(&format!("http://{}/metrics", h.metrics))
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        resp.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        resp.header("content-type")
    );
    resp.text()
}

/// The value of the series `series` (name and labels exactly as exposed).
pub(crate) fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

fn requests(text: &str, outcome: &str) -> f64 {
    value(
        text,
        &format!("portcullis_requests_total{{outcome=\"{outcome}\"}}"),
    )
}

#[tokio::test]
async fn traffic_moves_the_counters_by_exactly_what_happened() {
    let h = Harness::with(Setup {
        extra_toml: "[[rules]]\npath = \"/admin/**\"\ngroups = [\"nobody\"]\n".into(),
        ..Setup::default()
    })
    .await;
    let before = scrape(&h).await;
    assert_eq!(requests(&before, "proxied"), 0.0);

    // A browser sent to sign in, then the whole flow.
    let mut anonymous = h.browser();
    assert_eq!(anonymous.get(&h.url("/")).await.status, StatusCode::FOUND);
    let mut b = h.signed_in("ada").await;
    assert_eq!(b.get(&h.url("/x?q=1")).await.status, StatusCode::OK);
    assert_eq!(
        b.get(&h.url("/admin/y")).await.status,
        StatusCode::FORBIDDEN
    );
    let api = anonymous.get_json(&h.url("/api")).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);

    let text = scrape(&h).await;
    assert_eq!(requests(&text, "proxied"), 1.0);
    assert_eq!(requests(&text, "sign_in"), 1.0);
    assert_eq!(requests(&text, "unauthenticated"), 1.0);
    assert_eq!(requests(&text, "forbidden"), 1.0);
    assert_eq!(requests(&text, "upstream_error"), 0.0);
    assert_eq!(
        value(
            &text,
            "portcullis_sign_ins_total{provider=\"demo\",result=\"signed_in\"}"
        ),
        1.0
    );
    // The first request with the new cookie decrypts it, the second is a hit.
    let opened = |from: &str| {
        value(
            &text,
            &format!("portcullis_sessions_opened_total{{from=\"{from}\"}}"),
        )
    };
    assert_eq!(opened("cookie"), 1.0);
    assert_eq!(opened("cache"), 1.0);
    assert_eq!(
        value(&text, "portcullis_upstream_response_seconds_count"),
        1.0
    );
    // The code exchange; discovery and the JWKS before anything else.
    assert_eq!(
        value(
            &text,
            "portcullis_provider_request_seconds_count{endpoint=\"token\"}"
        ),
        1.0
    );
    for document in ["discovery", "jwks"] {
        let fetches = value(
            &text,
            &format!("portcullis_provider_metadata_fetches_total{{document=\"{document}\"}}"),
        );
        assert!(fetches >= 1.0, "{document}: {fetches}");
    }
    // No request asked for an upgrade.
    assert_eq!(value(&text, "portcullis_open_tunnels"), 0.0);
}

#[tokio::test]
async fn an_upstream_that_is_down_counts_as_an_upstream_error() {
    let h = Harness::with(Setup {
        upstream: Some(closed_addr()),
        ..Setup::default()
    })
    .await;
    let mut b = h.signed_in("ada").await;
    assert_eq!(b.get(&h.url("/")).await.status, StatusCode::BAD_GATEWAY);
    let text = scrape(&h).await;
    assert_eq!(requests(&text, "upstream_error"), 1.0);
    assert_eq!(requests(&text, "proxied"), 0.0);
    assert_eq!(
        value(&text, "portcullis_upstream_response_seconds_count"),
        0.0
    );
}

#[tokio::test]
async fn the_metrics_listener_answers_only_get_metrics() {
    let h = Harness::start().await;
    let mut client = Browser::new();
    let other = client.get(&format!("http://{}/", h.metrics)).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let post = client
        .request(
            Method::POST,
            &format!("http://{}/metrics", h.metrics),
            &[],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(post.status, StatusCode::NOT_FOUND);
    // And the proxy's own listener does not serve them.
    let proxied = h.browser().get_json(&h.url("/metrics")).await;
    assert_eq!(proxied.status, StatusCode::UNAUTHORIZED);
}

/// Waits (at most 5 s) until `h` reports `want` open connections.
async fn open_connections_become(h: &Harness, want: f64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = value(&scrape(h).await, "portcullis_open_connections");
        if now == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{now}, not {want}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn open_connections_rise_with_a_client_connection_and_fall_when_it_closes() {
    let h = Harness::start().await;
    open_connections_become(&h, 0.0).await;
    let client = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    open_connections_become(&h, 1.0).await;
    drop(client);
    open_connections_become(&h, 0.0).await;
}

#[tokio::test]
async fn a_refresh_is_counted_once_by_its_result() {
    // Due a second after sign-in (see `refresh.rs`).
    let h = Harness::with(Setup {
        idp: portcullis::demo::idp::IdpOptions {
            access_token_lifetime: 61,
            ..Default::default()
        },
        session_toml: "refresh_before = \"60s\"".into(),
        ..Setup::default()
    })
    .await;
    let mut b = h.signed_in("ada").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(b.get_json(&h.url("/x")).await.status, StatusCode::OK);
    assert_eq!(h.idp.refresh_count(), 1);
    let text = scrape(&h).await;
    let refreshes = |result: &str| {
        value(
            &text,
            &format!("portcullis_refreshes_total{{result=\"{result}\"}}"),
        )
    };
    assert_eq!(refreshes("renewed"), 1.0);
    assert_eq!(refreshes("kept"), 0.0);
    assert_eq!(refreshes("ended"), 0.0);
}

#[tokio::test]
async fn an_upstream_that_answers_too_late_counts_as_an_upstream_timeout() {
    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    // The harness's upstream.timeout is 2 s.
    let resp = b.get_json(&h.url("/delay/2500")).await;
    assert_eq!(resp.status, StatusCode::GATEWAY_TIMEOUT);
    let text = scrape(&h).await;
    assert_eq!(requests(&text, "upstream_timeout"), 1.0);
    assert_eq!(requests(&text, "upstream_error"), 0.0);
    assert_eq!(requests(&text, "proxied"), 0.0);
}
