//! Test-only: every property test of a parser that takes attacker input is also
//! a fuzz target. `fuzz` runs the property's proptest strategy, freshly seeded,
//! for `FUZZ_SECONDS` (default 10) and fails with the shrunk input on the first
//! counterexample. The targets are `#[ignore]`d tests named `fuzz_*`:
//!
//! ```sh
//! FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored --test-threads 1 --nocapture
//! ```
//!
//! Stable Rust only: no cargo-fuzz, no nightly.

use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases per runner; each runner gets its own random seed.
const BATCH: u32 = 64;

/// How long each target runs: `FUZZ_SECONDS`, default 10.
fn budget() -> Duration {
    let secs = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(10.0);
    Duration::from_secs_f64(secs)
}

/// Runs `property` on values from `strategy` until the budget is spent; panics
/// with the minimal failing input proptest shrinks to.
pub(crate) fn fuzz<S>(
    name: &str,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
{
    let started = Instant::now();
    let deadline = started + budget();
    let mut cases: u64 = 0;
    loop {
        let mut runner = TestRunner::new(Config {
            cases: BATCH,
            // A fuzz run is random on purpose; a failure is printed, shrunk, to
            // be kept as a plain regression test.
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(failure) = runner.run(&strategy, &property) {
            panic!("fuzz target {name} failed after {cases} cases: {failure}");
        }
        cases += u64::from(BATCH);
        if Instant::now() >= deadline {
            break;
        }
    }
    eprintln!(
        "fuzz target {name}: {cases} cases in {:.1} s, no counterexample",
        started.elapsed().as_secs_f64()
    );
}
