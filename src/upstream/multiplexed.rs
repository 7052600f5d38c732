//! HTTP/2 to the app (`upstream.protocol` = `h2c`, `h2`, or `auto` over
//! TLS), through hyper-util's pooled client: one connection carries many
//! requests, so its keyed pool costs little here, and it reads the ALPN
//! answer for `auto`. The HTTP/1.1 fast path stays in [`super::pool`].

use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::ServerName;

use super::pool::SendError;
use crate::config::{UpstreamConfig, UpstreamProtocol};
use crate::{Body, BoxError};

#[derive(Debug)]
pub(super) struct Multiplexed {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    scheme: Scheme,
    authority: http::uri::Authority,
}

impl Multiplexed {
    /// # Panics
    /// For `http1`, or a URL validation refuses.
    pub(super) fn new(cfg: &UpstreamConfig, connect_timeout: std::time::Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(super::tls::client_config(cfg));
        let builder = if cfg.url.scheme() == "https" {
            builder.https_only()
        } else {
            builder.https_or_http()
        };
        let builder = match &cfg.tls_server_name {
            Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(
                ServerName::try_from(name.clone()).expect("a validated tls_server_name"),
            )),
            None => builder,
        };
        let https = match cfg.protocol {
            UpstreamProtocol::Auto => builder.enable_all_versions().wrap_connector(http),
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => {
                builder.enable_http2().wrap_connector(http)
            }
            UpstreamProtocol::Http1 => unreachable!("http1 uses the HTTP/1.1 pool"),
        };
        let client = Client::builder(TokioExecutor::new())
            .http2_only(cfg.protocol != UpstreamProtocol::Auto)
            .build(https);
        let authority = cfg.url[url::Position::BeforeHost..url::Position::AfterPort]
            .parse()
            .expect("a URL's host and port are an authority");
        Self {
            client,
            scheme: if cfg.url.scheme() == "https" {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            },
            authority,
        }
    }

    /// Sends `req` (origin-form) to the app, in absolute form as the pooled
    /// client needs it.
    pub(super) async fn send(&self, mut req: Request<Body>) -> Result<Response<Body>, SendError> {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| SendError::Protocol(e.into()))?;
        match self.client.request(req).await {
            Ok(response) => Ok(response.map(|body| body.map_err(BoxError::from).boxed())),
            Err(error) if error.is_connect() => Err(SendError::Connect(error.into())),
            Err(error) => Err(SendError::Protocol(error.into())),
        }
    }
}
