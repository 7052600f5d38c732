//! Real browsers: headless Chromium driven by playwright-core (scripts in
//! e2e/). Needs node, Debian's chromium and `npm ci --prefix e2e`; `.ci/run`
//! installs them and sets REQUIRE_BROWSER_TEST=1 so that a missing piece fails
//! instead of skipping. Screenshots go to `target/e2e-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The README's quick start: `portcullis demo`, signed in and out (e2e/demo.mjs).
#[test]
fn demo_sign_in_and_out_in_headless_chromium() {
    let Some(report) = run_script("demo.mjs", "demo") else {
        return;
    };
    assert!(
        report.contains("ok - the app shows the signed-in user's email"),
        "{report}"
    );
}

/// panva's oidc-provider (OpenID Certified), two issuers, with its own login,
/// consent and end-session pages: sign-in, two refreshes, a websocket,
/// RP-initiated and back-channel logout, every portcullis page captured
/// (e2e/oidc_provider.mjs).
#[test]
fn certified_provider_end_to_end_in_headless_chromium() {
    let Some(report) = run_script("oidc_provider.mjs", "oidc-provider") else {
        return;
    };
    for step in [
        "ok - the app got the identity headers from findAccount",
        "ok - refresh 2: the app got a new access token",
        "ok - a message through the websocket came back",
        "ok - the app asks for sign-in again",
        "ok - Bob's next request is sent to sign-in",
        "all passed",
    ] {
        assert!(report.contains(step), "missing {step:?} in:\n{report}");
    }
}

/// Runs `e2e/<script> <portcullis> <artifact dir>` with node and returns what
/// it printed; `None` (skipped, with a note) when node, chromium or
/// playwright-core is missing and REQUIRE_BROWSER_TEST is not set.
fn run_script(script: &str, artifacts: &str) -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing: Vec<&str> = [
        (
            Command::new("node").arg("--version").output().is_err(),
            "node",
        ),
        (
            !Path::new(&chromium).exists(),
            "chromium (apt-get install chromium)",
        ),
        (
            !root.join("e2e/node_modules/playwright-core").exists(),
            "playwright-core (npm ci --prefix e2e)",
        ),
    ]
    .into_iter()
    .filter_map(|(absent, what)| absent.then_some(what))
    .collect();
    if !missing.is_empty() {
        let required = std::env::var_os("REQUIRE_BROWSER_TEST").is_some();
        assert!(
            !required,
            "browser test required but missing: {}",
            missing.join(", ")
        );
        eprintln!("skipped the browser test; missing: {}", missing.join(", "));
        return None;
    }
    let out = Command::new("node")
        .arg(root.join("e2e").join(script))
        .arg(env!("CARGO_BIN_EXE_portcullis"))
        .arg(artifact_dir().join(artifacts))
        .output()
        .expect("run node");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} failed:\n{report}");
    Some(report)
}

/// `target/e2e-artifacts/`, beside the profile directory that holds the binary
/// (so it follows CARGO_TARGET_DIR).
fn artifact_dir() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_portcullis"));
    let target = binary
        .parent()
        .and_then(Path::parent)
        .expect("the binary sits in <target>/<profile>/");
    target.join("e2e-artifacts")
}
