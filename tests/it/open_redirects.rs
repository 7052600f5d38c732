//! The open-redirect payloads of oauth2-proxy's and mod_auth_openidc's test
//! suites (tests/fixtures/open-redirects/, provenance in its README and
//! SOURCES.json), each sent as `rd`, raw and once-encoded, over real sockets to
//! every endpoint that takes one. Every resulting URL, resolved with a WHATWG
//! parser (`url::Url::join`) on `public_url`, keeps `public_url`'s origin:
//!
//! - `/oauth2/sign_in?rd=`: every link, image and form target on the page;
//! - `/oauth2/start/demo?rd=`: the `rd` stored in the flow cookie (opened with
//!   the test's session secret), which is what the callback redirects to; for
//!   a sample of the payloads (one in 80, and one in 16 of those whose stored
//!   `rd` is an on-site path rather than `/`), the whole sign-in is done and
//!   the callback's final `Location` checked, and shown to be that `rd`;
//! - `/oauth2/sign_out?rd=`, GET for every value and POST (the same handler)
//!   for every other payload: the `Location`, or every link and form target of
//!   a page.
//!
//! A full sign-in for each of the 1,734 values (3 more requests, an RS256
//! signature and its check) would make this test several times slower (a
//! sign-in costs as much as 20 of the other requests); the
//! flow cookie shows, for every value, the one thing the callback's redirect
//! is made from, and the unit properties in src/redirect/proptests.rs cover
//! `safe_rd` itself.

use std::collections::BTreeSet;
use std::path::Path;

use bytes::Bytes;
use http::{Method, StatusCode};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use portcullis::config::{SameSite, Secret, SessionConfig, StoreConfig};
use portcullis::session::SessionKeys;
use url::Url;

use crate::support::{Browser, Harness, Resp, SECRET};

/// Every payload of the corpus, as its test suite means it: oauth2-proxy's
/// list is query-decoded once (Go's `url.QueryUnescape`), the rest is literal.
fn payloads() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/open-redirects");
    let read = |path: &str| {
        std::fs::read_to_string(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let inline = |path: &str| -> Vec<String> {
        let doc: serde_json::Value = serde_json::from_str(&read(path)).expect("JSON");
        doc["payloads"]
            .as_array()
            .expect("a payloads array")
            .iter()
            .map(|p| p["payload"].as_str().expect("a payload").to_owned())
            .collect()
    };
    let lines = |path: &str| -> Vec<String> {
        let text = read(path);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        text.split('\n').map(str::to_owned).collect()
    };
    let mut all: BTreeSet<String> = BTreeSet::new();
    all.extend(
        lines("oauth2-proxy/openredirects.txt")
            .iter()
            .map(|line| query_unescape(line)),
    );
    all.extend(inline("oauth2-proxy/validator_test.inline.json"));
    all.extend(lines("mod_auth_openidc/open-redirect-payload-list.txt"));
    all.extend(inline("mod_auth_openidc/tests.inline.json"));
    all.into_iter().collect()
}

/// `+` as a space, then `%XX` decoded once.
fn query_unescape(line: &str) -> String {
    percent_decode_str(&line.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Everything but what RFC 3986 allows unescaped in a query, and `&`, `#`.
const NOT_QUERY: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'&')
    .add(b'<')
    .add(b'>')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The two ways a payload is sent: raw (only what a request target cannot
/// hold escaped, so portcullis decodes the payload's own escapes once more)
/// and encoded (so portcullis sees the payload exactly).
fn rd_forms(payload: &str) -> [String; 2] {
    [
        utf8_percent_encode(payload, NOT_QUERY).to_string(),
        url::form_urlencoded::byte_serialize(payload.as_bytes()).collect(),
    ]
}

/// `href`, `src`, `action` and `formaction` values of a page, unescaped.
fn link_targets(html: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for attribute in ["href=\"", "src=\"", "action=\"", "formaction=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            targets.push(
                rest[..end]
                    .replace("&quot;", "\"")
                    .replace("&#x27;", "'")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&"),
            );
        }
    }
    targets
}

struct Check<'a> {
    public_url: Url,
    payload: &'a str,
    sent: &'a str,
}

impl Check<'_> {
    /// `target` resolves on `public_url` and keeps its origin.
    fn stays(&self, endpoint: &str, target: &str) -> Url {
        let landed = self.public_url.join(target).unwrap_or_else(|e| {
            panic!(
                "{endpoint}: {target:?} does not resolve ({e}); payload {:?} sent as {:?}",
                self.payload, self.sent
            )
        });
        assert_eq!(
            landed.origin(),
            self.public_url.origin(),
            "{endpoint}: {target:?} leaves the site for {landed}; payload {:?} sent as {:?}",
            self.payload,
            self.sent
        );
        assert!(
            landed.username().is_empty() && landed.password().is_none(),
            "{endpoint}: {landed} carries credentials; payload {:?}",
            self.payload
        );
        // An app that redirects on such a path would send the browser off-site.
        assert!(
            !landed.path().starts_with("//"),
            "{endpoint}: {landed} has a path starting with //; payload {:?}",
            self.payload
        );
        landed
    }

    /// A redirect's `Location`, or every target on a page.
    fn response_stays(&self, endpoint: &str, resp: &Resp) {
        match resp.status {
            StatusCode::FOUND | StatusCode::SEE_OTHER => {
                self.stays(endpoint, resp.location());
            }
            StatusCode::OK => {
                for target in link_targets(&resp.text()) {
                    self.stays(endpoint, &target);
                }
            }
            other => panic!(
                "{endpoint}: unexpected {other} for payload {:?}: {}",
                self.payload,
                resp.text()
            ),
        }
    }
}

/// The `rd` sealed in the flow cookie `start` set.
fn stored_rd(keys: &SessionKeys, start: &Resp) -> String {
    let cookie = start
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("_portcullis_flow_"))
        .expect("start sets a flow cookie");
    let pair = cookie.split(';').next().expect("a pair");
    let (name, value) = pair.split_once('=').expect("name=value");
    let flow = keys.open(name, value).expect("the flow cookie opens");
    let flow: serde_json::Value = serde_json::from_slice(&flow).expect("flow JSON");
    flow["rd"].as_str().expect("an rd").to_owned()
}

/// One payload in this many is signed in with through the callback...
const SIGN_IN_EVERY: usize = 80;
/// ... and one in this many of those whose `rd` is kept (an on-site path).
const KEPT_SIGN_IN_EVERY: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_open_redirect_payload_leaves_the_site_from_any_endpoint() {
    let payloads = payloads();
    // 1,440 payloads in the four files, 867 distinct once decoded as meant.
    assert!(payloads.len() > 850, "only {} payloads", payloads.len());
    let h = Harness::start().await;
    let keys = SessionKeys::new(&SessionConfig {
        secret: Secret::new(SECRET),
        previous_secrets: Vec::new(),
        cookie_name: "_portcullis".into(),
        lifetime: std::time::Duration::from_secs(3600),
        idle_timeout: None,
        refresh_before: std::time::Duration::from_secs(60),
        refresh_interval: None,
        secure: false,
        same_site: SameSite::Lax,
        domain: None,
        store: StoreConfig::Cookie,
    });
    let public_url = Url::parse(&h.base).expect("public_url");
    let mut b = Browser::new();
    let (mut sign_ins, mut kept) = (0, 0);
    for (n, payload) in payloads.iter().enumerate() {
        for sent in rd_forms(payload) {
            let check = Check {
                public_url: public_url.clone(),
                payload,
                sent: &sent,
            };
            b.cookies.clear();
            let page = b.get(&h.url(&format!("/oauth2/sign_in?rd={sent}"))).await;
            assert_eq!(page.status, StatusCode::OK, "sign_in {sent:?}");
            let links = link_targets(&page.text());
            assert!(
                links
                    .iter()
                    .any(|l| l.starts_with("/oauth2/start/demo?rd=")),
                "{}",
                page.text()
            );
            for link in &links {
                check.stays("sign_in page", link);
            }

            // GET for every value; POST (the same handler) for every other payload.
            let methods: &[Method] = if n % 2 == 0 {
                &[Method::GET, Method::POST]
            } else {
                &[Method::GET]
            };
            for method in methods {
                b.cookies.clear();
                let url = h.url(&format!("/oauth2/sign_out?rd={sent}"));
                let out = b
                    .request(
                        method.clone(),
                        &url,
                        &[("accept", "text/html")],
                        Bytes::new(),
                    )
                    .await;
                check.response_stays(&format!("{method} sign_out"), &out);
            }

            b.cookies.clear();
            let start = b
                .get(&h.url(&format!("/oauth2/start/demo?rd={sent}")))
                .await;
            assert_eq!(start.status, StatusCode::FOUND, "start {sent:?}");
            let rd = stored_rd(&keys, &start);
            check.stays("rd stored by start", &rd);
            let kept_one = rd != "/";
            if kept_one {
                kept += 1;
            }
            // A sample of each kind: of every payload, and of the kept ones.
            if n % SIGN_IN_EVERY == 0 || (kept_one && kept % KEPT_SIGN_IN_EVERY == 1) {
                let callback = b.authorize(start.location(), "ada").await;
                let done = b.get(&callback).await;
                assert_eq!(done.status, StatusCode::FOUND, "callback: {}", done.text());
                check.stays("callback", done.location());
                assert_eq!(
                    percent_decode_str(done.location()).decode_utf8_lossy(),
                    percent_decode_str(&rd).decode_utf8_lossy(),
                    "the callback goes where the flow says"
                );
                sign_ins += 1;
            }
        }
    }
    eprintln!(
        "{} payloads, {} rd values, {kept} kept as on-site paths, {sign_ins} full sign-ins",
        payloads.len(),
        2 * payloads.len()
    );
}

/// `[access] allowed_redirect_domains` tricks (issue #13 item 8), each sent
/// as `rd`, raw and once-encoded, to sign-in, start and sign-out: every
/// target either keeps `public_url`'s origin or is a URL on an allowed host
/// and port exactly; none names the hostile host.
#[tokio::test]
async fn allowed_redirect_domain_tricks_lead_to_no_other_host() {
    let h = crate::support::Harness::with(crate::support::Setup {
        extra_toml: "[access]\nallowed_redirect_domains = [\".example.com\", \"app.test:8443\"]\n"
            .into(),
        ..Default::default()
    })
    .await;
    let keys = SessionKeys::new(&SessionConfig {
        secret: Secret::new(SECRET),
        previous_secrets: Vec::new(),
        cookie_name: "_portcullis".into(),
        lifetime: std::time::Duration::from_secs(3600),
        idle_timeout: None,
        refresh_before: std::time::Duration::from_secs(60),
        refresh_interval: None,
        secure: false,
        same_site: SameSite::Lax,
        domain: None,
        store: StoreConfig::Cookie,
    });
    let public_url = Url::parse(&h.base).unwrap();
    let allowed = |url: &Url| {
        let host = url.host_str().unwrap_or_default();
        let on_example = (host == "example.com" || host.ends_with(".example.com"))
            && !host.starts_with('.')
            && !host.contains("..")
            && url.port().is_none();
        let on_app = host == "app.test" && url.port() == Some(8443);
        url.scheme() == "http"
            && (on_example || on_app)
            && url.username().is_empty()
            && url.password().is_none()
            && !url.path().starts_with("//")
    };
    let landed = |endpoint: &str, payload: &str, target: &str| {
        let url = public_url.join(target).unwrap();
        assert!(
            url.origin() == public_url.origin() || allowed(&url),
            "{endpoint}: {payload:?} -> {target:?}"
        );
        assert!(
            !url.host_str().unwrap_or_default().contains("evil"),
            "{endpoint}: {payload:?} -> {target:?}"
        );
    };
    let tricks = [
        "http://evil-example.com/",
        "http://example.com.evil/",
        "http://example.com@evil/",
        "http://a.example.com@evil.com/",
        "http://user:pw@a.example.com/",
        "http://evil.com#@a.example.com/",
        "http://evil.com?@a.example.com/",
        "http://evil.com\\@a.example.com/",
        "http://a.example.com\\@evil.com/",
        "http://a.example.com%2F@evil.com/",
        "http://a.example.com%40evil.com/",
        "http://a.example.com:8443/",
        "http://app.test/",
        "http://app.test:8444/",
        "http://a..example.com/",
        "http://a.example.com./",
        "http://exаmple.com/",
        "http://a.example。com.evil/",
        "//a.example.com/",
        "/\\a.example.com/",
        "http:a.example.com/",
        "http:/a.example.com/",
        "javascript://a.example.com/%0aalert(1)",
        "data:text/html,a.example.com",
        " http://a.example.com/",
        "http://a.example.com/\t/evil.com",
        "http://a.exam\tple.com/",
        "http://a.example.com//evil.com",
        "http://a.example.com/%2f%2fevil.com",
        "http%3A%2F%2Fevil.com/",
        "http://93.184.216.34/",
        // Allowed ones, as a control: they pass.
        "http://a.example.com/ok",
        "http://app.test:8443/ok",
    ];
    let mut b = Browser::new();
    let mut passed = 0;
    for payload in tricks {
        for sent in rd_forms(payload) {
            b.cookies.clear();
            let page = b.get(&h.url(&format!("/oauth2/sign_in?rd={sent}"))).await;
            assert_eq!(page.status, StatusCode::OK);
            for link in link_targets(&page.text()) {
                landed("sign_in page", payload, &link);
            }
            let start = b
                .get(&h.url(&format!("/oauth2/start/demo?rd={sent}")))
                .await;
            let rd = stored_rd(&keys, &start);
            landed("rd stored by start", payload, &rd);
            if rd.ends_with("/ok") {
                passed += 1;
            }
            b.cookies.clear();
            let out = b.get(&h.url(&format!("/oauth2/sign_out?rd={sent}"))).await;
            assert_eq!(out.status, StatusCode::FOUND, "{payload:?}");
            landed("sign_out", payload, out.location());
        }
    }
    assert_eq!(passed, 4, "the two allowed URLs pass, raw and encoded");
}
