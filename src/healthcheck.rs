//! `portcullis healthcheck`: a probe for images without curl (Docker's
//! `HEALTHCHECK`, a Kubernetes exec probe). Part of the binary, not the library.
//!
//! One plain-HTTP GET with a 2 s deadline covering connect and response head;
//! healthy means `200`. A listener on every interface (`0.0.0.0`, `::`) is
//! probed on loopback, which is where the probe runs: inside the container.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use url::Url;

const DEADLINE: Duration = Duration::from_secs(2);

/// The URL to probe for a server listening on `listen`.
pub fn url_for(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!(
        "http://{}/oauth2/healthz",
        SocketAddr::new(ip, listen.port())
    )
}

/// `Ok` on a `200`; otherwise a one-line reason.
pub fn probe(url: &str) -> Result<(), String> {
    let url = Url::parse(url).map_err(|e| format!("{url}: not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!("{url}: only http:// can be probed"));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    match rt.block_on(async { tokio::time::timeout(DEADLINE, get(&url)).await }) {
        Ok(Ok(200)) => Ok(()),
        Ok(Ok(status)) => Err(format!("{url}: status {status}, expected 200")),
        Ok(Err(e)) => Err(format!("{url}: {e}")),
        Err(_) => Err(format!("{url}: no answer within {DEADLINE:?}")),
    }
}

async fn get(url: &Url) -> Result<u16, String> {
    let addrs = url
        .socket_addrs(|| Some(80))
        .map_err(|e| format!("cannot resolve: {e}"))?;
    let stream = tokio::net::TcpStream::connect(&*addrs)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(conn);
    let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
    let request = hyper::Request::get(&url[url::Position::BeforePath..url::Position::AfterQuery])
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "portcullis-healthcheck")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    Ok(response.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_probed_on_loopback() {
        for (listen, url) in [
            ("0.0.0.0:4180", "http://127.0.0.1:4180/oauth2/healthz"),
            ("[::]:4180", "http://[::1]:4180/oauth2/healthz"),
            ("10.1.2.3:80", "http://10.1.2.3:80/oauth2/healthz"),
            ("[fd00::1]:4180", "http://[fd00::1]:4180/oauth2/healthz"),
        ] {
            assert_eq!(url_for(listen.parse().unwrap()), url);
        }
    }

    #[test]
    fn only_plain_http_is_probed() {
        let err = probe("https://127.0.0.1:4180/oauth2/healthz").unwrap_err();
        assert!(err.contains("only http://"), "{err}");
    }
}
