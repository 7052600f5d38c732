//! Per-request header and policy work: stripping spoofed identity and hop-by-hop
//! headers from a 50-header request, matching 50 rules, validating `rd`.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
mod support;

use portcullis::config::Config;
use portcullis::headers::{SpoofGuard, strip_hop_by_hop};
use portcullis::policy::{Admits, Policy, Requirement};
use portcullis::redirect::safe_rd;

fn quick<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

/// A browser-like request of 50 headers, one spoofed identity header in an
/// underscore spelling and one header named in `Connection`.
fn fifty_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let fixed = [
        ("host", "app.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://app.example.com/projects/42"),
        ("cookie", "_portcullis=abc; theme=dark; _ga=GA1.2.3"),
        ("connection", "keep-alive, x-trace-hop"),
        ("x-trace-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("upgrade-insecure-requests", "1"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-user", "?1"),
        ("priority", "u=0, i"),
        ("x_forwarded_user", "admin"),
    ];
    for (name, value) in fixed {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    let mut i = 0;
    while headers.len() < 50 {
        let name = HeaderName::try_from(format!("x-app-header-{i}")).expect("a valid name");
        headers.append(name, HeaderValue::from_static("some-value-0123456789"));
        i += 1;
    }
    headers
}

fn bench_headers(c: &mut Criterion) {
    let guard = SpoofGuard::new([
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-preferred-username",
        "x-forwarded-provider",
        "x-forwarded-access-token",
    ]);
    let request = fifty_headers();
    let mut group = quick(c, "headers_50");
    group.bench_function("spoof_guard", |b| {
        b.iter_batched_ref(
            || request.clone(),
            |h| guard.strip(black_box(h)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("hop_by_hop", |b| {
        b.iter_batched_ref(
            || request.clone(),
            |h| strip_hop_by_hop(black_box(h)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// 50 rules of every kind, none matching the benchmarked path, so every one is tried.
fn fifty_rules() -> Config {
    let mut rules = String::new();
    for i in 0..50 {
        let rule = match i % 5 {
            0 => format!("path = \"/public/{i}/\"\npublic = true"),
            1 => format!("path = \"/api/v{i}/**\"\napi = true"),
            2 => format!("path = \"/static/{i}/*.css\"\nmethods = [\"GET\"]\npublic = true"),
            3 => format!("path = \"/admin/{i}\"\ngroups = [\"admins\"]"),
            _ => format!("path = \"/reports/*/{i}/**/summary\"\ngroups = [\"finance\"]"),
        };
        rules.push_str(&format!("[[rules]]\n{rule}\n"));
    }
    support::config(&rules)
}

fn bench_policy(c: &mut Criterion) {
    let policy = Policy::new(&fifty_rules()).expect("no emails file to read");
    // Percent-encoded, with capitals and `//`: the long way through every
    // reading (a plain path like `/projects/42/issues` is used as it is).
    let raw = "/projects/42/Boards/%7Eteam//issues/1234";
    let plain = "/projects/42/boards/team/issues/1234";
    for path in [raw, plain] {
        assert_eq!(
            policy.judge(&Method::GET, path),
            Ok(Requirement::SignedIn {
                admits: Admits::default(),
                api: false
            }),
            "the bench path must match no rule"
        );
    }
    let mut group = quick(c, "policy_50_rules");
    group.bench_function("judge_plain", |b| {
        b.iter(|| policy.judge(black_box(&Method::GET), black_box(plain)))
    });
    group.bench_function("judge_every_reading", |b| {
        b.iter(|| policy.judge(black_box(&Method::GET), black_box(raw)))
    });
    // 8 KB that forks every reading (capitals, `;`, decoded twice, `\`,
    // trailing dots, NFKC, streams): refused once its variants pass 16.
    let hostile = "/Admin;x/a%2541\\b./%EF%BD%81:y".repeat(280);
    assert!(policy.judge(&Method::GET, &hostile).is_err());
    group.bench_function("judge_hostile_8k_refused", |b| {
        b.iter(|| policy.judge(black_box(&Method::GET), black_box(&hostile)))
    });
    // Without the `\`: 16 variants, 32 readings, each matched against the
    // 50 rules: the most work an accepted path can ask.
    let worst = "/Admin;x/a%2541b./%EF%BD%81:y".repeat(280);
    assert!(policy.judge(&Method::GET, &worst).is_ok());
    group.bench_function("judge_worst_accepted_8k", |b| {
        b.iter(|| policy.judge(black_box(&Method::GET), black_box(&worst)))
    });
    group.finish();
}

fn bench_rd(c: &mut Criterion) {
    let mut group = quick(c, "safe_rd");
    for (label, rd) in [
        ("plain", "/projects/42/issues?sort=updated&page=3"),
        ("encoded", "/search?q=%E2%9C%93%20caf%C3%A9%252F"),
        ("hostile", "/%2F%2Fevil.example.com/%2e%2e"),
    ] {
        group.bench_function(label, |b| b.iter(|| safe_rd(black_box(Some(rd)))));
    }
    group.finish();
}

criterion_group!(benches, bench_headers, bench_policy, bench_rd);
criterion_main!(benches);
