//! The `portcullis` command: check, secret, and refusing a bad configuration.

use std::process::Command;

pub(crate) fn portcullis(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run portcullis");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("portcullis-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn secret_prints_32_random_bytes() {
    let (code, a, _) = portcullis(&["secret"], &[]);
    let (_, b, _) = portcullis(&["secret"], &[]);
    assert_eq!(code, 0);
    assert_eq!(a.trim().len(), 43, "32 bytes in unpadded base64url: {a}");
    assert_ne!(a, b);
}

#[test]
fn check_prints_the_resolved_config_with_secrets_redacted() {
    let path = write_config(
        "good.toml",
        "[session]\nsecret = \"file-secret-0123456789abcdef0123456789\"\n[providers.corp]\nissuer = \"https://sso.example.com\"\nclient_id = \"c\"\n",
    );
    let (code, out, err) = portcullis(
        &["check", "--config", &path],
        &[(
            "PORTCULLIS_PROVIDERS__CORP__CLIENT_SECRET",
            "env-client-secret",
        )],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[redacted]"), "{out}");
    assert!(
        !out.contains("file-secret") && !out.contains("env-client-secret"),
        "{out}"
    );
    assert!(out.contains("https://sso.example.com"), "{out}");
    // What to register at the provider, after the config.
    for uri in [
        "http://127.0.0.1:4180/oauth2/callback/corp",
        "http://127.0.0.1:4180/oauth2/signed_out",
        "http://127.0.0.1:4180/oauth2/backchannel_logout/corp",
    ] {
        assert!(out.contains(uri), "{uri} in {out}");
    }
}

#[test]
fn invalid_config_exits_64_naming_each_key() {
    let path = write_config(
        "bad.toml",
        "[upstream]\ntimeout = \"soon\"\n[providers.corp]\nissuer = \"https://sso.example.com\"\n",
    );
    for command in ["check", "run"] {
        let (code, _, err) = portcullis(&[command, "--config", &path], &[]);
        assert_eq!(code, 64, "{command}: {err}");
        for key in [
            "upstream.timeout:",
            "session.secret: missing",
            "providers.corp.client_id: missing",
        ] {
            assert!(err.contains(key), "{command}: expected {key} in:\n{err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let (code, _, err) = portcullis(&["run", "--config", "/nonexistent/portcullis.toml"], &[]);
    assert_eq!(code, 64);
    assert!(
        err.contains("/nonexistent/portcullis.toml") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn every_example_config_is_valid_apart_from_its_secret_files() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(root.join("providers"))
        .unwrap()
        .chain(std::fs::read_dir(&root).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    for file in files {
        let (code, _, err) = portcullis(&["check", "--config", &file.display().to_string()], &[]);
        // The examples point at /run/secrets/*, which this machine does not have.
        let unexpected: Vec<&str> = err
            .lines()
            .skip(1)
            .filter(|l| !l.contains("_file: cannot read /run/secrets/"))
            .collect();
        assert!(
            code == 0 || unexpected.is_empty(),
            "{}: {err}",
            file.display()
        );
    }
}

#[test]
fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    use std::io::{BufRead, BufReader};
    let path = write_config(
        "logs.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\n[session]\nsecret = \"log-secret-0123456789abcdef0123456789\"\n[providers.corp]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"c\"\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "--config", &path])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start portcullis");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let listening = lines
        .by_ref()
        .take(20)
        .map_while(Result::ok)
        .find(|l| l.contains("portcullis listening"));
    let _ = child.kill();
    let _ = child.wait();
    let line = listening.expect("a start-up log line");
    assert!(!line.contains('\u{1b}'), "escape codes in {line:?}");
    assert!(!line.contains("log-secret"), "{line}");
}

/// What Kubernetes sets in every pod of a namespace with a Service named
/// `portcullis` (ports 4180, named `http`, and 9180, named `metrics`).
const KUBERNETES_SERVICE_LINKS: [(&str, &str); 14] = [
    ("PORTCULLIS_SERVICE_HOST", "10.0.0.7"),
    ("PORTCULLIS_SERVICE_PORT", "4180"),
    ("PORTCULLIS_SERVICE_PORT_HTTP", "4180"),
    ("PORTCULLIS_SERVICE_PORT_METRICS", "9180"),
    ("PORTCULLIS_PORT", "tcp://10.0.0.7:4180"),
    ("PORTCULLIS_PORT_4180_TCP", "tcp://10.0.0.7:4180"),
    ("PORTCULLIS_PORT_4180_TCP_PROTO", "tcp"),
    ("PORTCULLIS_PORT_4180_TCP_PORT", "4180"),
    ("PORTCULLIS_PORT_4180_TCP_ADDR", "10.0.0.7"),
    ("PORTCULLIS_PORT_9180_TCP", "tcp://10.0.0.7:9180"),
    ("PORTCULLIS_PORT_9180_TCP_PROTO", "tcp"),
    ("PORTCULLIS_PORT_9180_TCP_PORT", "9180"),
    ("PORTCULLIS_PORT_9180_TCP_ADDR", "10.0.0.7"),
    // The configuration itself, as a pod spec would give it.
    (
        "PORTCULLIS_SESSION__SECRET",
        "env-secret-0123456789abcdef0123456789",
    ),
];

fn kubernetes_config() -> String {
    write_config(
        "kubernetes.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\n[providers.corp]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"c\"\n",
    )
}

#[test]
fn kubernetes_service_link_variables_are_not_configuration() {
    let path = kubernetes_config();
    let mut env = KUBERNETES_SERVICE_LINKS.to_vec();
    env.push(("RUST_LOG", "portcullis=debug"));
    let (code, out, err) = portcullis(&["check", "--config", &path], &env);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("[redacted]"),
        "the secret still came from the environment: {out}"
    );
    // Named once at debug, by name only.
    assert!(err.contains("PORTCULLIS_SERVICE_HOST"), "{err}");
    assert!(!err.contains("10.0.0.7"), "{err}");

    // And it runs.
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "--config", &path])
        .envs(KUBERNETES_SERVICE_LINKS)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start portcullis");
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut listening = false;
    for line in lines.take(20).map_while(Result::ok) {
        if line.contains("portcullis listening") {
            listening = true;
            break;
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(listening, "portcullis did not start: {seen:?}");
}

#[test]
fn a_misspelt_key_in_the_environment_is_still_refused_by_name() {
    let path = kubernetes_config();
    let mut env = KUBERNETES_SERVICE_LINKS.to_vec();
    env.push(("PORTCULLIS_SERVER__LISTN", "0.0.0.0:4180"));
    let (code, _, err) = portcullis(&["check", "--config", &path], &env);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("server.listn:"), "{err}");
    assert!(
        err.contains("`listen`"),
        "the fix names the key meant: {err}"
    );
    assert!(
        !err.lines().any(|l| l.trim_start().starts_with("port")),
        "service links are not keys: {err}"
    );
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `portcullis run`, returned once it says it listens.
fn run_until_listening(path: &str, env: &[(&str, &str)]) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "--config", path])
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start portcullis");
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = lines
        .take(20)
        .map_while(Result::ok)
        .any(|l| l.contains("portcullis listening"));
    assert!(listening, "portcullis did not start");
    child
}

#[test]
fn healthcheck_finds_a_running_server_from_the_config_and_env() {
    let port = free_port();
    // Its provider cannot be reached, so /oauth2/readyz answers 503.
    let path = write_config(
        "healthcheck.toml",
        "[session]\nsecret = \"hc-secret-0123456789abcdef0123456789\"\n[providers.corp]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"c\"\n",
    );
    // Listening on every interface: the probe goes to loopback.
    let listen = format!("0.0.0.0:{port}");
    let env = [("PORTCULLIS_SERVER__LISTEN", listen.as_str())];
    let mut server = run_until_listening(&path, &env);
    let healthy = portcullis(&["healthcheck", "--config", &path], &env);
    let not_ready = portcullis(
        &[
            "healthcheck",
            "--url",
            &format!("http://127.0.0.1:{port}/oauth2/readyz"),
        ],
        &[],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(healthy.0, 0, "{}", healthy.2);
    assert_eq!(not_ready.0, 1, "{}", not_ready.2);
    assert!(not_ready.2.contains("status 503"), "{}", not_ready.2);
    assert_eq!(not_ready.2.lines().count(), 1, "{}", not_ready.2);
}

#[test]
fn healthcheck_fails_with_one_line_when_nothing_listens() {
    let port = free_port();
    let (code, _, err) = portcullis(
        &["healthcheck", "--config", "/nonexistent/portcullis.toml"],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "invalid configuration: --config /nonexistent/portcullis.toml: file not found"
        ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let (code, _, err) = portcullis(
        &["healthcheck"],
        &[
            ("PORTCULLIS_SERVER__LISTEN", &format!("127.0.0.1:{port}")),
            (
                "PORTCULLIS_SESSION__SECRET",
                "hc-secret-0123456789abcdef0123456789",
            ),
            ("PORTCULLIS_PROVIDERS__CORP__ISSUER", "http://127.0.0.1:9"),
            ("PORTCULLIS_PROVIDERS__CORP__CLIENT_ID", "c"),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}/oauth2/healthz: cannot connect")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn run_serves_metrics_on_metrics_listen_and_logs_json_lines() {
    use std::io::{BufRead, BufReader, Read, Write};
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let path = write_config(
        "metrics.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"{metrics}\"\n[log]\nformat = \"json\"\n[session]\nsecret = \"log-secret-0123456789abcdef0123456789\"\n[providers.corp]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"c\"\n"
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "--config", &path])
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start portcullis");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let announced = lines
        .by_ref()
        .take(20)
        .map_while(Result::ok)
        .inspect(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        })
        .find(|l| l.contains("metrics at /metrics"));
    let scraped = announced.is_some().then(|| {
        let mut stream = std::net::TcpStream::connect(metrics).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    });
    let _ = child.kill();
    let _ = child.wait();
    let scraped = scraped.expect("the metrics listener is announced");
    assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
    assert!(
        scraped.contains("portcullis_build_info{version="),
        "{scraped}"
    );
}
