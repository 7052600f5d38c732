//! portcullis as the forward-auth service of real front proxies (issue #13
//! item 5): Debian's nginx (`auth_request`) and caddy (`forward_auth`), each
//! started here on a loopback port with the configuration in `examples/`
//! (addresses and host names replaced), in front of the demo upstream,
//! signing a browser in end to end through the demo identity provider.
//! Traefik is not in Debian: its example is parsed and its keys checked.
//!
//! A missing `nginx` or `caddy` skips its test with a printed note, unless
//! `REQUIRE_PROXIES` is set (`.ci/run` sets it): then the test fails.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_norway::Value;

use crate::support::{Browser, Harness, Resp, Setup, param};

/// How long a starting proxy may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// The host names the Caddy test uses; the browser reaches them all at
/// Caddy's loopback port, naming them in `Host`.
const SIGN_IN_HOST: &str = "auth.portcullis.test";
const APP_HOST: &str = "app.portcullis.test";

/// A public path: anonymous requests reach the app, with no identity.
const PUBLIC: &str = "[[rules]]\npath = \"/public/\"\npublic = true\n";

/// Every identity header, as a client forging them would send them.
const FORGED: [(&str, &str); 3] = [
    ("x-forwarded-user", "mallory"),
    ("x-forwarded-email", "mallory@example.com"),
    ("x-forwarded-groups", "admins"),
];

/// An anonymous request on the public path, with forged identity headers:
/// the app gets none of them.
async fn forged_identity_never_reaches_the_app(proxy: &FrontProxy, url: &str) {
    let mut b = Browser::new();
    let resp = proxy
        .request(&mut b, url, "application/json", &FORGED)
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", proxy.logs());
    for (name, _) in FORGED {
        assert_eq!(resp.upstream_header(name), None, "{name} reached the app");
    }
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn example(name: &str) -> String {
    std::fs::read_to_string(examples().join(name)).unwrap()
}

/// `text` with `from` replaced, which must be there (else the example
/// changed and the test would quietly test something else).
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is no longer in the example");
    text.replace(from, to)
}

/// A loopback port nothing listens on (barring a race).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// A front proxy started by a test: its own directory (config, pid, logs,
/// temp files), stopped by its pid and the directory removed on drop.
struct FrontProxy {
    name: &'static str,
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl FrontProxy {
    /// nginx running `server_block` (from `examples/nginx-forward-auth.conf`)
    /// inside a minimal main configuration whose every path is under its
    /// own directory; `None` when nginx is missing and not required.
    async fn nginx(port: u16, server_block: &str) -> Option<Self> {
        let binary = find_binary("nginx", "NGINX", &["/usr/sbin/nginx"])?;
        let dir = temp_dir("nginx");
        let d = dir.display();
        // As root, nginx's workers would switch to `nobody`, who cannot use
        // this directory; as anyone else a `user` line is refused.
        let user = if running_as_root() { "user root;" } else { "" };
        let conf = format!(
            "{user}
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{server_block}
}}
"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut cmd = Command::new(binary);
        cmd.arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"));
        Some(Self::spawn("nginx", port, dir, cmd).await)
    }

    /// caddy running `caddyfile` (from `examples/Caddyfile`) with no admin
    /// endpoint, no automatic HTTPS and its data under its own directory.
    async fn caddy(port: u16, caddyfile: &str) -> Option<Self> {
        let binary = find_binary("caddy", "CADDY", &["/usr/bin/caddy"])?;
        let dir = temp_dir("caddy");
        let global = format!(
            "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {}\n}}\n\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("Caddyfile"), global + caddyfile).unwrap();
        let mut cmd = Command::new(binary);
        cmd.arg("run")
            .arg("--adapter")
            .arg("caddyfile")
            .arg("--config")
            .arg(dir.join("Caddyfile"))
            .arg("--pidfile")
            .arg(dir.join("caddy.pid"))
            .env("HOME", &dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"));
        Some(Self::spawn("caddy", port, dir, cmd).await)
    }

    async fn spawn(name: &'static str, port: u16, dir: PathBuf, mut cmd: Command) -> Self {
        let log = std::fs::File::create(dir.join("output.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut proxy = Self {
            name,
            port,
            dir,
            child,
        };
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = proxy.child.try_wait().unwrap() {
                panic!("{name} exited ({status}):\n{}", proxy.logs());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return proxy;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} did not listen on {port}:\n{}",
                proxy.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything it logged, for a failure message.
    fn logs(&self) -> String {
        ["output.log", "error.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `path` on the app behind it, as a browser asks for it at `host`.
    async fn get(&self, b: &mut Browser, host: &str, path: &str, accept: &str) -> Resp {
        self.request(
            b,
            &format!("http://{host}:{}{path}", self.port),
            accept,
            &[],
        )
        .await
    }

    /// `url`, sent to this proxy when its host is one of the test's names
    /// (or the proxy's own address), else straight to where it points.
    async fn request(
        &self,
        b: &mut Browser,
        url: &str,
        accept: &str,
        extra: &[(&str, &str)],
    ) -> Resp {
        let parsed = url::Url::parse(url).unwrap();
        let host = parsed.host_str().unwrap();
        let mut headers = vec![("accept", accept)];
        headers.extend_from_slice(extra);
        let authority;
        let target = if host.ends_with(".portcullis.test") {
            authority = format!("{host}:{}", parsed.port().unwrap());
            headers.push(("host", &authority));
            let path = &parsed[url::Position::BeforePath..];
            format!("http://127.0.0.1:{}{path}", self.port)
        } else {
            url.to_owned()
        };
        b.request(Method::GET, &target, &headers, Bytes::new())
            .await
    }
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        // SIGTERM, so that nginx's master stops its workers; then SIGKILL.
        if let Ok(Some(_)) = self.child.try_wait() {
            let _ = std::fs::remove_dir_all(&self.dir);
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop on SIGTERM: killed", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `$env`, else `name` on the PATH, else one of `known` paths; `None` (with
/// a note) when there is none and `REQUIRE_PROXIES` is unset.
fn find_binary(name: &str, env: &str, known: &[&str]) -> Option<PathBuf> {
    let found = std::env::var_os(env).map(PathBuf::from).or_else(|| {
        let on_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        });
        on_path.or_else(|| known.iter().map(PathBuf::from).find(|p| p.is_file()))
    });
    if found.is_none() {
        assert!(
            std::env::var_os("REQUIRE_PROXIES").is_none(),
            "REQUIRE_PROXIES is set but {name} is not installed (apt-get install {name}, or set {env} to its path)"
        );
        eprintln!("skipped: {name} is not installed (apt-get install {name})");
    }
    found
}

/// portcullis with the demo upstream at `upstream`, trusting loopback
/// proxies, signing in without a provider list.
async fn portcullis(upstream: SocketAddr, public_url: String, extra: &str) -> Harness {
    Harness::with(Setup {
        upstream: Some(upstream),
        public_url: Some(public_url),
        server_toml: "trusted_proxies = [\"127.0.0.0/8\"]".into(),
        extra_toml: format!("{PUBLIC}[sign_in]\nauto_redirect = true\n{extra}"),
        ..Setup::default()
    })
    .await
}

async fn demo_upstream() -> SocketAddr {
    portcullis::demo::upstream::start().await.unwrap().0
}

#[tokio::test]
async fn nginx_auth_request_signs_a_browser_in_and_refuses_an_anonymous_api_client() {
    let port = free_port();
    let upstream = demo_upstream().await;
    let h = portcullis(upstream, format!("http://127.0.0.1:{port}"), "").await;
    let mut server = example("nginx-forward-auth.conf");
    server = replaced(
        &server,
        "listen 443 ssl;",
        &format!("listen 127.0.0.1:{port};"),
    );
    server = replaced(&server, "127.0.0.1:4180", &h.addr.to_string());
    server = replaced(&server, "127.0.0.1:8080", &upstream.to_string());
    let Some(nginx) = FrontProxy::nginx(port, &server).await else {
        return;
    };
    let app = format!("http://127.0.0.1:{port}");

    // An API client: 401, never sent to sign in.
    let mut api = Browser::new();
    let resp = nginx
        .request(&mut api, &format!("{app}/private"), "application/json", &[])
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", nginx.logs());
    assert!(resp.header("location").is_none());

    forged_identity_never_reaches_the_app(&nginx, &format!("{app}/public/x")).await;

    // A browser: to sign-in on the same host, through the provider, and back.
    let mut b = Browser::new();
    let resp = nginx
        .request(&mut b, &format!("{app}/private/page?x=1"), "text/html", &[])
        .await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", nginx.logs());
    let sign_in = resp.location().to_owned();
    assert_eq!(
        sign_in,
        format!("{app}/oauth2/sign_in?rd=/private/page?x=1"),
        "nginx's error_page"
    );
    let resp = nginx.request(&mut b, &sign_in, "text/html", &[]).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let callback = b.authorize(resp.location(), "grace").await;
    assert!(callback.starts_with(&format!("{app}/oauth2/callback/demo?")));
    let resp = nginx.request(&mut b, &callback, "text/html", &[]).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    assert_eq!(resp.location(), "/private/page?x=1");

    // Signed in: the app gets the identity nginx copied from the 202, not
    // the one the client sent.
    let resp = nginx
        .request(
            &mut b,
            &format!("{app}/private/page?x=1"),
            "application/json",
            &[("x-forwarded-user", "mallory")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", nginx.logs());
    assert_eq!(resp.upstream_values("x-forwarded-user"), ["grace"]);
    assert_eq!(
        resp.upstream_header("x-forwarded-email").as_deref(),
        Some("grace@example.com")
    );
}

#[tokio::test]
async fn caddy_forward_auth_signs_a_browser_in_on_a_central_host() {
    let port = free_port();
    let upstream = demo_upstream().await;
    let h = Harness::with(Setup {
        upstream: Some(upstream),
        public_url: Some(format!("http://{SIGN_IN_HOST}:{port}")),
        server_toml: "trusted_proxies = [\"127.0.0.0/8\"]".into(),
        session_toml: "domain = \"portcullis.test\"".into(),
        extra_toml: format!(
            "{PUBLIC}[sign_in]\nauto_redirect = true\n[access]\nallowed_redirect_domains = [\"{APP_HOST}:{port}\"]\n"
        ),
        ..Setup::default()
    })
    .await;
    let mut caddyfile = example("Caddyfile");
    caddyfile = replaced(
        &caddyfile,
        "auth.example.com {",
        &format!("http://{SIGN_IN_HOST}:{port} {{"),
    );
    caddyfile = replaced(
        &caddyfile,
        "app.example.com {",
        &format!("http://{APP_HOST}:{port} {{"),
    );
    caddyfile = replaced(&caddyfile, "127.0.0.1:4180", &h.addr.to_string());
    caddyfile = replaced(&caddyfile, "127.0.0.1:8080", &upstream.to_string());
    let Some(caddy) = FrontProxy::caddy(port, &caddyfile).await else {
        return;
    };

    // An API client: portcullis' 401, passed on by Caddy.
    let mut api = Browser::new();
    let resp = caddy
        .get(&mut api, APP_HOST, "/private", "application/json")
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", caddy.logs());
    assert_eq!(resp.json()["error"], "unauthenticated");

    forged_identity_never_reaches_the_app(&caddy, &format!("http://{APP_HOST}:{port}/public/x"))
        .await;

    // A browser: to the central sign-in host with the app's URL as rd.
    let mut b = Browser::new();
    let resp = caddy
        .get(&mut b, APP_HOST, "/private/page?x=1&y=2", "text/html")
        .await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", caddy.logs());
    let back = format!("http://{APP_HOST}:{port}/private/page?x=1&y=2");
    let sign_in = resp.location().to_owned();
    assert!(
        sign_in.starts_with(&format!("http://{SIGN_IN_HOST}:{port}/oauth2/sign_in?")),
        "{sign_in}"
    );
    assert_eq!(param(&sign_in, "rd").as_deref(), Some(back.as_str()));

    let resp = caddy.request(&mut b, &sign_in, "text/html", &[]).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let callback = b.authorize(resp.location(), "grace").await;
    assert!(
        callback.starts_with(&format!(
            "http://{SIGN_IN_HOST}:{port}/oauth2/callback/demo?"
        )),
        "{callback}"
    );
    let resp = caddy.request(&mut b, &callback, "text/html", &[]).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    assert_eq!(resp.location(), back, "back to the app's own URL");
    // Set on the sign-in host for every host under the shared domain.
    let session = resp
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("_portcullis=") || c.starts_with("_portcullis_0="))
        .expect("a session cookie");
    assert!(
        session
            .to_ascii_lowercase()
            .contains("domain=portcullis.test"),
        "{session}"
    );

    // Signed in on the app's host: Caddy copies the identity headers from the
    // 202 over what the client sent.
    let resp = caddy
        .request(
            &mut b,
            &back,
            "application/json",
            &[("x-forwarded-user", "mallory"), ("x-forwarded-name", "x")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", caddy.logs());
    assert_eq!(resp.upstream_values("x-forwarded-user"), ["grace"]);
    assert_eq!(
        resp.upstream_header("x-forwarded-email").as_deref(),
        Some("grace@example.com")
    );
    assert_eq!(resp.json()["uri"], "/private/page?x=1&y=2");
}

/// The Traefik example cannot be run here: its keys are checked instead.
#[test]
fn the_traefik_example_checks_every_app_request_and_copies_the_identity_headers() {
    let text = example("traefik-forward-auth.yml");
    let doc: Value = serde_norway::from_str(&text).unwrap();
    let http = &doc["http"];
    let middlewares = http["middlewares"].as_mapping().expect("http.middlewares");
    let (name, middleware) = middlewares.iter().next().expect("one middleware");
    let name = name.as_str().unwrap();
    let fa = &middleware["forwardAuth"];
    let address = fa["address"].as_str().expect("forwardAuth.address");
    let address = url::Url::parse(address).unwrap();
    assert_eq!(address.path(), "/oauth2/auth");
    let portcullis = &http["services"]["portcullis"]["loadBalancer"]["servers"][0]["url"];
    assert_eq!(
        url::Url::parse(portcullis.as_str().unwrap())
            .unwrap()
            .origin(),
        address.origin(),
        "the check and the sign-in host go to the same portcullis"
    );
    assert_eq!(
        fa["trustForwardHeader"].as_bool(),
        Some(false),
        "a client's X-Forwarded-* must not name the original request"
    );
    let copied: Vec<&str> = fa["authResponseHeaders"]
        .as_sequence()
        .expect("authResponseHeaders")
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    // Every identity header portcullis sends by default (config.toml's
    // [headers]) is copied, so that none can come from the client.
    let config: toml::Table = toml::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml"))
            .unwrap(),
    )
    .unwrap();
    let headers = config["headers"].as_table().expect("[headers]");
    for header in headers.keys() {
        assert!(
            copied.iter().any(|c| c.eq_ignore_ascii_case(header)),
            "{header} is not in authResponseHeaders"
        );
    }
    let routers = http["routers"].as_mapping().expect("http.routers");
    let mut checked = 0;
    for (router, r) in routers {
        let uses = r["middlewares"]
            .as_sequence()
            .is_some_and(|m| m.iter().any(|m| m.as_str() == Some(name)));
        let service = r["service"].as_str().unwrap();
        if service == "portcullis" {
            assert!(!uses, "{router:?}: the sign-in host must not be checked");
        } else {
            assert!(
                uses,
                "{router:?}: an app without the forwardAuth middleware"
            );
            checked += 1;
        }
    }
    assert!(checked >= 1);
}
