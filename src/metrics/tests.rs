use super::*;

fn scraped(metrics: &Metrics) -> String {
    metrics.encode()
}

#[test]
fn every_outcome_is_exposed_from_zero_and_counted_by_its_own_counter() {
    let metrics = Metrics::new(TaskTracker::new());
    metrics.request(Outcome::Forbidden);
    metrics.request(Outcome::Forbidden);
    metrics.request(Outcome::Proxied);
    let text = scraped(&metrics);
    for outcome in Outcome::ALL {
        let want = match outcome {
            Outcome::Forbidden => 2,
            Outcome::Proxied => 1,
            _ => 0,
        };
        let line = format!(
            "portcullis_requests_total{{outcome=\"{}\"}} {want}\n",
            outcome.label()
        );
        assert!(text.contains(&line), "{line} in:\n{text}");
    }
}

#[test]
fn timings_are_cumulative_buckets_with_a_sum_and_count() {
    let metrics = Metrics::new(TaskTracker::new());
    metrics.upstream_response(Duration::from_micros(500));
    metrics.upstream_response(Duration::from_millis(20));
    metrics.upstream_response(Duration::from_secs(60));
    let text = scraped(&metrics);
    for line in [
        "portcullis_upstream_response_seconds_bucket{le=\"0.001\"} 1\n",
        "portcullis_upstream_response_seconds_bucket{le=\"0.025\"} 2\n",
        "portcullis_upstream_response_seconds_bucket{le=\"30\"} 2\n",
        "portcullis_upstream_response_seconds_bucket{le=\"+Inf\"} 3\n",
        "portcullis_upstream_response_seconds_sum 60.0205\n",
        "portcullis_upstream_response_seconds_count 3\n",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}

#[test]
fn sign_ins_refreshes_and_opened_sessions_carry_their_labels() {
    let metrics = Metrics::new(TaskTracker::new());
    metrics.sign_in("corp", SignInResult::denied);
    metrics.refresh(RefreshResult::Kept);
    metrics.opened.count(OpenedFrom::Decrypted);
    let text = scraped(&metrics);
    for line in [
        "portcullis_sign_ins_total{provider=\"corp\",result=\"denied\"} 1\n",
        "portcullis_refreshes_total{result=\"kept\"} 1\n",
        "portcullis_refreshes_total{result=\"renewed\"} 0\n",
        "portcullis_sessions_opened_total{from=\"cookie\"} 1\n",
        "portcullis_sessions_opened_total{from=\"cache\"} 0\n",
        "portcullis_open_tunnels 0\n",
        "portcullis_open_connections 0\n",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    assert!(text.contains(&format!(
        "portcullis_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )));
}

#[tokio::test]
async fn provider_calls_are_timed_by_endpoint_and_fetches_counted() {
    let metrics = Metrics::new(TaskTracker::new());
    metrics.provider.time(ProviderCall::Jwks, async {}).await;
    metrics.provider.time(ProviderCall::Token, async {}).await;
    let text = scraped(&metrics);
    for line in [
        "portcullis_provider_request_seconds_count{endpoint=\"jwks\"} 1\n",
        "portcullis_provider_request_seconds_count{endpoint=\"token\"} 1\n",
        "portcullis_provider_request_seconds_count{endpoint=\"userinfo\"} 0\n",
        "portcullis_provider_metadata_fetches_total{document=\"jwks\"} 1\n",
        "portcullis_provider_metadata_fetches_total{document=\"discovery\"} 0\n",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}
