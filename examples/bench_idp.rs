//! The load benchmark's helper (`bench/load.sh`): the demo identity provider on a
//! fixed port, and a client that signs in through portcullis the way a browser
//! would (start → authorize with `login_hint` → callback).
//!
//! ```text
//! bench_idp serve PORT                       run the provider until killed
//! bench_idp serve PORT TOKENS N FILE         the same, after writing N access
//!                                            tokens for ada (JWTs, one a line)
//! bench_idp cookie BASE_URL [CA_PEM]         sign in once as ada; print the Cookie header
//!                                            (an https BASE_URL's certificate is checked
//!                                            against CA_PEM, a self-signed one say)
//! bench_idp cookies BASE_URL N CONNS         sign in N times (CONNS at a time); print
//!                                            each session's Cookie header, one a line
//! bench_idp sign-ins BASE_URL CONNS SECONDS  sign in repeatedly; print the rate
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis::demo::idp::{DemoIdp, IdpOptions, JwtSigning};
use portcullis::{Body, BoxError};

const PROVIDER: &str = "demo";
const USER: &str = "ada";
const SESSION_COOKIE: &str = "_portcullis";

type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["serve", port] => serve(port, None).await,
        ["serve", port, "tokens", n, file] => serve(port, Some((n, file))).await,
        ["cookie", base] => cookie(base, None).await,
        ["cookie", base, ca] => cookie(base, Some(ca)).await,
        ["cookies", base, n, conns] => cookies(base, n, conns).await,
        ["sign-ins", base, conns, seconds] => sign_ins(base, conns, seconds).await,
        _ => Err(
            "usage: bench_idp serve PORT [tokens N FILE] | cookie BASE_URL [CA_PEM] | cookies BASE_URL N CONNS | sign-ins BASE_URL CONNS SECONDS"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // With its causes: "client error (Connect)" alone says little.
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("bench_idp: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(port: &str, tokens: Option<(&str, &str)>) -> Result<(), BoxError> {
    let port: u16 = port.parse()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let idp = Arc::new(DemoIdp::start_on(listener, IdpOptions::default()).await?);
    if let Some((n, file)) = tokens {
        // Each with its own `jti`: a different token, so portcullis checks
        // every one's signature instead of answering from its verdict cache.
        // RSA signing is slow (about a millisecond): one minting task per
        // core. Written whole under another name, then renamed, so that a
        // reader waiting for FILE never sees part of it.
        let n: usize = n.parse()?;
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        let mut minting = tokio::task::JoinSet::new();
        for worker in 0..workers {
            let idp = idp.clone();
            let count = n / workers + usize::from(worker < n % workers);
            minting.spawn(async move {
                let mut lines = String::new();
                for _ in 0..count {
                    let claims = idp.access_token_claims(USER);
                    lines.push_str(&idp.sign_access_token(&claims, JwtSigning::Current).await);
                    lines.push('\n');
                }
                lines
            });
        }
        let lines = minting.join_all().await.concat();
        let partial = format!("{file}.partial");
        std::fs::write(&partial, lines)?;
        std::fs::rename(&partial, file)?;
    }
    println!("{}", idp.issuer());
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn cookie(base: &str, ca: Option<&str>) -> Result<(), BoxError> {
    let client = client(ca)?;
    println!("{}", sign_in(&client, base).await?);
    Ok(())
}

/// `N` sign-ins, `CONNS` at a time; each session's Cookie header on a line of
/// its own (each a different session, as many browsers would hold).
async fn cookies(base: &str, n: &str, conns: &str) -> Result<(), BoxError> {
    let (n, conns): (u64, usize) = (n.parse()?, conns.parse()?);
    let client = client(None)?;
    let next = Arc::new(AtomicU64::new(0));
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let (client, base, next) = (client.clone(), base.to_owned(), next.clone());
        loops.spawn(async move {
            let mut got = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                got.push(sign_in(&client, &base).await?);
            }
            Ok::<_, BoxError>(got)
        });
    }
    let mut out = String::new();
    for got in loops.join_all().await {
        for cookie in got? {
            out.push_str(&cookie);
            out.push('\n');
        }
    }
    print!("{out}");
    Ok(())
}

/// `CONNS` sign-in loops for `SECONDS`; every one must end with a session cookie.
async fn sign_ins(base: &str, conns: &str, seconds: &str) -> Result<(), BoxError> {
    let conns: usize = conns.parse()?;
    let run_for = Duration::from_secs_f64(seconds.parse()?);
    let client = client(None)?;
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let (client, base) = (client.clone(), base.to_owned());
        let (done, failed) = (done.clone(), failed.clone());
        loops.spawn(async move {
            while started.elapsed() < run_for {
                match sign_in(&client, &base).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("bench_idp: sign-in failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
    }
    loops.join_all().await;
    let elapsed = started.elapsed().as_secs_f64();
    let (done, failed) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "sign_ins={done} failed={failed} seconds={elapsed:.3} per_second={:.1}",
        done as f64 / elapsed
    );
    if failed > 0 {
        return Err(format!("{failed} sign-ins failed").into());
    }
    Ok(())
}

/// Plain HTTP, and HTTPS trusting only the certificates in `ca` (none without
/// it): the bench's servers have self-signed ones.
fn client(ca: Option<&str>) -> Result<HttpClient, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        for cert in CertificateDer::pem_file_iter(ca)? {
            roots.add(cert?)?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// One sign-in as `USER`; the `Cookie` header value that carries the session.
async fn sign_in(client: &HttpClient, base: &str) -> Result<String, BoxError> {
    let start = get(client, &format!("{base}/oauth2/start/{PROVIDER}?rd=/"), "").await?;
    let flow_cookie = cookie_pairs(&start).join("; ");
    let authorize = format!("{}&login_hint={USER}", location(&start)?);
    let approved = get(client, &authorize, "").await?;
    let callback = get(client, location(&approved)?, &flow_cookie).await?;
    let session: Vec<String> = cookie_pairs(&callback)
        .into_iter()
        // Over https the session cookie is `__Host-_portcullis` (README, Sessions).
        .filter(|pair| {
            pair.trim_start_matches("__Host-")
                .starts_with(SESSION_COOKIE)
                && !pair.contains("_flow_")
        })
        .collect();
    if session.is_empty() {
        return Err("the callback set no session cookie".into());
    }
    Ok(session.join("; "))
}

/// GETs `url` and expects a redirect; returns its headers.
async fn get(client: &HttpClient, url: &str, cookie: &str) -> Result<HeaderMap, BoxError> {
    let mut req = Request::get(url);
    if !cookie.is_empty() {
        req = req.header(COOKIE, cookie);
    }
    let req = req.body(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed(),
    )?;
    let resp = client.request(req).await?;
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    body.collect().await?;
    if status != StatusCode::FOUND {
        return Err(format!("GET {} answered {status}, not 302", strip_query(url)).into());
    }
    Ok(parts.headers)
}

fn location(headers: &HeaderMap) -> Result<&str, BoxError> {
    Ok(headers
        .get(LOCATION)
        .ok_or("redirect without Location")?
        .to_str()?)
}

/// `name=value` of every Set-Cookie that sets (rather than deletes) a cookie.
fn cookie_pairs(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.contains("Max-Age=0"))
        .filter_map(|v| v.split(';').next())
        .map(str::to_owned)
        .collect()
}

/// URLs are printed without their query: it holds codes and state.
fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}
