//! The test harness: a real identity provider (the demo one, which signs real
//! tokens and can be told to misbehave), a real upstream, and portcullis, all on
//! 127.0.0.1 over real sockets; plus a small cookie-keeping client that never
//! follows redirects, so every 302 is seen.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis::demo::idp::{DemoIdp, IdpOptions};
use portcullis::{App, Live};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

pub struct Harness {
    pub idp: DemoIdp,
    pub base: String,
    pub addr: SocketAddr,
    /// Where its `GET /metrics` is served.
    pub metrics: SocketAddr,
    /// The configuration it runs, for [`Harness::replica`].
    toml: String,
    /// What serves requests, for [`Harness::reload`].
    live: std::sync::Arc<Live>,
    _stop: oneshot::Sender<()>,
}

/// Knobs for one harness.
#[derive(Default)]
pub struct Setup {
    pub idp: IdpOptions,
    /// TOML appended to the generated config (extra tables such as [[rules]]).
    pub extra_toml: String,
    /// Extra keys for the `[providers.demo]` table.
    pub provider_toml: String,
    /// Replaces the whole `[providers.demo]` table (and `provider_toml`) with these
    /// `[providers.*]` tables; `{demo_idp}` in them becomes the demo identity
    /// provider's issuer (its base URL in the Microsoft layout), without a trailing slash.
    pub providers_toml: Option<String>,
    /// Upstream address override (e.g. a closed port).
    pub upstream: Option<SocketAddr>,
    /// Extra keys for `[upstream]`.
    pub upstream_toml: String,
    /// Extra keys for `[session]`.
    pub session_toml: String,
    /// Extra keys for `[server]`.
    pub server_toml: String,
    /// `server.public_url` instead of portcullis' own address (a front
    /// proxy's, when sign-in runs through it).
    pub public_url: Option<String>,
    /// Serve at once instead of waiting until every provider's metadata is loaded.
    pub no_ready_wait: bool,
    /// Write no `[upstream]` table (and ignore `upstream`, `upstream_toml`):
    /// for `[[upstreams]]` alone, in `extra_toml`.
    pub no_default_upstream: bool,
}

impl Harness {
    pub async fn start() -> Self {
        Self::with(Setup::default()).await
    }

    pub async fn with(setup: Setup) -> Self {
        let idp = DemoIdp::start(setup.idp.clone())
            .await
            .expect("start identity provider");
        let upstream_table = if setup.no_default_upstream {
            String::new()
        } else {
            let upstream: SocketAddr = match setup.upstream {
                Some(a) => a,
                None => {
                    portcullis::demo::upstream::start()
                        .await
                        .expect("start upstream")
                        .0
                }
            };
            format!(
                "[upstream]\nurl = \"http://{upstream}\"\ntimeout = \"2s\"\n{}",
                setup.upstream_toml
            )
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let secret_line = match &setup.idp.client_secret {
            Some(s) => format!("client_secret = {s:?}"),
            None => String::new(),
        };
        let issuer = idp.issuer().as_str().trim_end_matches('/').to_owned();
        let providers = match &setup.providers_toml {
            Some(tables) => tables.replace("{demo_idp}", &issuer),
            None => format!(
                "[providers.demo]\nissuer = \"{issuer}\"\nclient_id = {client_id:?}\n{secret_line}\n{provider}",
                client_id = setup.idp.client_id,
                provider = setup.provider_toml,
            ),
        };
        let toml = format!(
            r#"
[server]
listen = "{addr}"
public_url = "{public_url}"
{server}
{upstream_table}
[session]
{secret}
{session}
{providers}
{extra}
"#,
            server = setup.server_toml,
            public_url = setup.public_url.as_deref().unwrap_or(&base),
            session = setup.session_toml,
            secret = if setup.session_toml.contains("secret =") {
                String::new()
            } else {
                format!("secret = \"{SECRET}\"")
            },
            extra = setup.extra_toml,
        );
        let (stop, metrics, live) = serve(&toml, listener, setup.no_ready_wait).await;
        Harness {
            idp,
            base,
            addr,
            metrics,
            toml,
            live,
            _stop: stop,
        }
    }

    /// Reloads it as SIGHUP does, from a file holding its configuration with
    /// each `(from, to)` replaced; answers the refusal's reason.
    pub async fn reload(&self, replace: &[(&str, &str)]) -> Result<(), String> {
        let mut toml = self.toml.clone();
        for (from, to) in replace {
            assert!(toml.contains(from), "{from:?} is not in the configuration");
            toml = toml.replace(from, to);
        }
        let dir = std::env::temp_dir().join(format!(
            "portcullis-reload-{}-{}",
            std::process::id(),
            self.addr.port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, toml).unwrap();
        let source = portcullis::reload::ConfigSource { path, named: true };
        portcullis::reload::reload(&self.live, &source, "test").await
    }

    /// The configuration now serving requests.
    pub fn app(&self) -> std::sync::Arc<App> {
        self.live.app()
    }

    /// A second portcullis on the same configuration (same identity
    /// provider, upstream, secrets and session store), on its own port: a
    /// replica. Cookies are per host, not per port, so one `Browser` uses both.
    pub async fn replica(&self) -> Replica {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let toml = self.toml.replace(&self.addr.to_string(), &addr.to_string());
        let (stop, _, _) = serve(&toml, listener, false).await;
        Replica {
            base: format!("http://{addr}"),
            _stop: stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn browser(&self) -> Browser {
        Browser::new()
    }

    /// A browser signed in as the demo user `sub`, through the real flow.
    pub async fn signed_in(&self, sub: &str) -> Browser {
        let mut b = self.browser();
        let resp = b.sign_in(self, sub, "/").await;
        assert_eq!(
            resp.status,
            StatusCode::FOUND,
            "sign-in should end in a redirect: {}",
            resp.text()
        );
        assert_eq!(resp.location(), "/");
        b
    }
}

/// Builds portcullis from `toml` and serves it on `listener` until the
/// returned sender drops; first waits for provider discovery and the session
/// store, unless `no_ready_wait`. Its metrics are served on the address returned.
async fn serve(
    toml: &str,
    listener: TcpListener,
    no_ready_wait: bool,
) -> (oneshot::Sender<()>, SocketAddr, std::sync::Arc<Live>) {
    let config = portcullis::config::from_figment(figment::Figment::from(
        <figment::providers::Toml as figment::providers::Format>::string(toml),
    ))
    .unwrap_or_else(|e| panic!("test config refused:\n{e}\n{toml}"));
    let app = App::new(config).expect("build app");
    assert!(
        no_ready_wait
            || app
                .providers
                .wait_ready(std::time::Duration::from_secs(10))
                .await,
        "provider discovery did not finish"
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !no_ready_wait && !app.sessions.is_up() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session store did not come up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let metrics_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = metrics_listener.local_addr().unwrap();
    tokio::spawn(portcullis::metrics::serve(
        app.metrics.clone(),
        metrics_listener,
    ));
    let live = Live::new(app).expect("TLS files");
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = live.clone();
    tokio::spawn(async move {
        let _ = serving
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await;
    });
    (stop, metrics, live)
}

/// A second instance of a [`Harness`]'s portcullis ([`Harness::replica`]).
pub struct Replica {
    pub base: String,
    _stop: oneshot::Sender<()>,
}

impl Replica {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
    /// The echo upstream's view of one request header (all values, joined).
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        let values = self.upstream_values(name);
        (!values.is_empty()).then(|| values.join(", "))
    }

    /// Every value the echo upstream saw for `name` (one per header line).
    pub fn upstream_values(&self, name: &str) -> Vec<String> {
        echoed_values(&self.json(), name)
    }
}

/// The values of `name` in the echo upstream's JSON `headers` pairs, one per header line.
pub fn echoed_values(json: &Value, name: &str) -> Vec<String> {
    json["headers"]
        .as_array()
        .expect("echo upstream JSON")
        .iter()
        .filter(|pair| pair[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|pair| pair[1].as_str().unwrap().to_owned())
        .collect()
}

/// Keeps cookies like a browser (by name; everything here is 127.0.0.1) and
/// never follows redirects.
pub struct Browser {
    client: Client<HttpConnector, Full<Bytes>>,
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    pub fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            cookies: BTreeMap::new(),
        }
    }

    pub async fn get(&mut self, url: &str) -> Resp {
        self.request(Method::GET, url, &[("accept", "text/html")], Bytes::new())
            .await
    }

    pub async fn get_json(&mut self, url: &str) -> Resp {
        self.request(
            Method::GET,
            url,
            &[("accept", "application/json")],
            Bytes::new(),
        )
        .await
    }

    pub async fn request(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        if !self.cookies.is_empty()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        {
            req = req.header("cookie", self.cookie_header());
        }
        let resp = self
            .client
            .request(req.body(Full::new(body)).unwrap())
            .await
            .expect("request failed");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("read body").to_bytes();
        let resp = Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        };
        self.remember(&resp);
        resp
    }

    fn remember(&mut self, resp: &Resp) {
        for sc in resp.set_cookies() {
            let first = sc.split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            let deleted = sc.to_ascii_lowercase().contains("max-age=0") || value.is_empty();
            if deleted {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// The `Cookie` header this browser sends.
    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Session cookie chunks currently held.
    pub fn session_cookies(&self) -> Vec<(&String, &String)> {
        self.cookies
            .iter()
            .filter(|(k, _)| k.starts_with("_portcullis") && !k.contains("_flow_"))
            .collect()
    }

    /// Starts a sign-in; returns the provider's authorization URL.
    pub async fn start(&mut self, h: &Harness, rd: &str) -> String {
        self.start_with(h, "demo", rd).await
    }

    /// Starts a sign-in with the provider `provider`; returns its authorization URL.
    pub async fn start_with(&mut self, h: &Harness, provider: &str, rd: &str) -> String {
        let rd: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let resp = self
            .get(&h.url(&format!("/oauth2/start/{provider}?rd={rd}")))
            .await;
        assert_eq!(resp.status, StatusCode::FOUND, "start: {}", resp.text());
        resp.location().to_owned()
    }

    /// The provider approves `sub` at once (login_hint); returns the callback URL.
    pub async fn authorize(&mut self, authorize_url: &str, sub: &str) -> String {
        let resp = self.get(&format!("{authorize_url}&login_hint={sub}")).await;
        assert_eq!(resp.status, StatusCode::FOUND, "authorize: {}", resp.text());
        resp.location().to_owned()
    }

    /// The whole flow; returns the callback's response.
    pub async fn sign_in(&mut self, h: &Harness, sub: &str, rd: &str) -> Resp {
        let authorize = self.start(h, rd).await;
        let callback = self.authorize(&authorize, sub).await;
        self.get(&callback).await
    }
}

/// A query parameter of a URL.
/// An address on 127.0.0.1 that nothing listens on.
pub fn closed_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

pub fn param(url: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Reads a raw HTTP/1.1 response from `conn` into `got` until it holds `text`;
/// panics if the connection closes first.
pub async fn read_until(conn: &mut tokio::net::TcpStream, got: &mut Vec<u8>, text: &str) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(got).contains(text) {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(got));
        got.extend_from_slice(&buf[..n]);
    }
}

/// Reads a chunked response on into `got` until its last (empty) chunk or the
/// connection's end, at most 10 s; whether it ended in time.
pub async fn read_to_the_end(conn: &mut tokio::net::TcpStream, got: &mut Vec<u8>) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let n = conn.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.ends_with(b"0\r\n\r\n") {
                break;
            }
        }
    })
    .await
    .is_ok()
}
