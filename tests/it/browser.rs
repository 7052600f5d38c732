//! The README's quick start in a real browser: `portcullis demo`, driven by
//! headless Chromium through playwright-core (e2e/demo.mjs). Needs node, Debian's
//! chromium and `npm ci --prefix e2e`; `.ci/run` installs them and sets
//! REQUIRE_BROWSER_TEST=1 so that a missing piece fails instead of skipping.

use std::path::Path;
use std::process::Command;

#[test]
fn demo_sign_in_and_out_in_headless_chromium() {
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
        return;
    }
    let out = Command::new("node")
        .arg(root.join("e2e/demo.mjs"))
        .arg(env!("CARGO_BIN_EXE_portcullis"))
        .output()
        .expect("run node");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser sign-in failed:\n{report}");
    assert!(
        report.contains("ok - the app shows the signed-in user's email"),
        "{report}"
    );
}
