//! The one HTTP client for calls to identity providers (STYLE §9): hyper-util's
//! pooled client over rustls. It never follows redirects (the openidconnect docs'
//! SSRF warning), bounds every call by a timeout and every response by a size limit.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};
use url::Url;

use crate::config::CaBundle;

/// Whole-call limit: connect, send, wait and read the body.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body accepted from a provider.
pub const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone, Debug)]
pub struct ProviderHttp {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A failed call to a provider, for the operator: which URL, and why.
#[derive(thiserror::Error, Debug)]
#[error("{url}: {reason}")]
pub struct HttpError {
    /// Scheme, host, port and path only: queries may carry codes or tokens.
    pub url: String,
    pub reason: HttpFailure,
}

impl HttpError {
    /// A failure of the call to `url`, which is kept redacted.
    pub(super) fn at(url: &Url, reason: HttpFailure) -> Self {
        Self {
            url: redacted_url(url.as_str()),
            reason,
        }
    }
}

#[derive(thiserror::Error, Debug)]
pub enum HttpFailure {
    #[error("connection refused")]
    ConnectionRefused,
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("timed out after {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("response larger than {} KiB", .0 / 1024)]
    TooLarge(usize),
    #[error("request failed: {0}")]
    Request(String),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("answered something that is not JSON: {0}")]
    NotJson(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl ProviderHttp {
    /// A client trusting the system's roots, webpki's and `extra_ca` (`server.extra_ca_file`).
    pub fn new(extra_ca: Option<&CaBundle>) -> Result<Self, rustls::Error> {
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(crate::config::tls::roots(extra_ca))
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Sends `request` and reads the whole response, within [`TIMEOUT`] and [`MAX_BODY`].
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.send_within(request, TIMEOUT, MAX_BODY).await
    }

    /// Sends `request` and reads the whole response, within `timeout` and
    /// `max_body` bytes.
    pub async fn send_within(
        &self,
        request: HttpRequest,
        timeout: Duration,
        max_body: usize,
    ) -> Result<HttpResponse, HttpError> {
        let url = redacted_url(&request.uri().to_string());
        let fail = |reason| HttpError {
            url: url.clone(),
            reason,
        };
        let (mut parts, body) = request.into_parts();
        // GitHub's API refuses requests without one.
        parts
            .headers
            .entry(USER_AGENT)
            .or_insert(HeaderValue::from_static("portcullis"));
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| describe_client_error(&e))?;
            read_limited(response, max_body).await
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result.map_err(fail),
            Err(_) => Err(fail(HttpFailure::TimedOut(timeout))),
        }
    }

    /// As [`send`](Self::send), but a `5xx` or `429` answer is an error too: the
    /// provider is unavailable, whatever its body says.
    pub async fn send_available(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let url = redacted_url(&request.uri().to_string());
        let response = self.send(request).await?;
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(HttpError {
                url,
                reason: HttpFailure::Status(status),
            });
        }
        Ok(response)
    }

    /// GETs a JSON document, with `bearer` as the access token when given (userinfo).
    pub async fn get_json(
        &self,
        url: &Url,
        bearer: Option<&str>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, HttpError> {
        json_object(url, &self.get(url, bearer).await?)
    }

    /// GETs `url` asking for JSON, with `bearer` as the access token when given.
    /// Any status comes back: the caller reads error bodies its provider's way.
    pub async fn get(&self, url: &Url, bearer: Option<&str>) -> Result<HttpResponse, HttpError> {
        let fail = |reason| HttpError::at(url, reason);
        let mut request = http::Request::get(url.as_str()).header(ACCEPT, "application/json");
        if let Some(token) = bearer {
            let value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                fail(HttpFailure::InvalidRequest(
                    "the access token is not a valid header value".into(),
                ))
            })?;
            request = request.header(AUTHORIZATION, value);
        }
        let request = request
            .body(Vec::new())
            .map_err(|e| fail(HttpFailure::InvalidRequest(e.to_string())))?;
        self.send(request).await
    }

    /// POSTs `body` as JSON with `bearer` as the access token, asking for
    /// JSON. Any status comes back.
    pub async fn post_json(
        &self,
        url: &Url,
        bearer: &str,
        body: &serde_json::Value,
    ) -> Result<HttpResponse, HttpError> {
        let fail = |reason| HttpError::at(url, reason);
        let value = HeaderValue::try_from(format!("Bearer {bearer}")).map_err(|_| {
            fail(HttpFailure::InvalidRequest(
                "the access token is not a valid header value".into(),
            ))
        })?;
        let request = http::Request::post(url.as_str())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, value)
            .body(body.to_string().into_bytes())
            .map_err(|e| fail(HttpFailure::InvalidRequest(e.to_string())))?;
        self.send(request).await
    }

    /// POSTs `form` as `application/x-www-form-urlencoded`, asking for JSON, with
    /// HTTP Basic client authentication when `basic` is given (RFC 6749 §2.3.1:
    /// both parts form-urlencoded first). Any status comes back.
    pub async fn post_form(
        &self,
        url: &Url,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<HttpResponse, HttpError> {
        use base64::Engine;
        let fail = |reason| HttpError::at(url, reason);
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = http::Request::post(url.as_str())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            let encode =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                encode(id),
                encode(secret)
            ));
            let value = HeaderValue::try_from(format!("Basic {credentials}")).map_err(|_| {
                fail(HttpFailure::InvalidRequest(
                    "the client credentials are not a valid header value".into(),
                ))
            })?;
            request = request.header(AUTHORIZATION, value);
        }
        let request = request
            .body(body.into_bytes())
            .map_err(|e| fail(HttpFailure::InvalidRequest(e.to_string())))?;
        self.send(request).await
    }
}

/// The provider client for openidconnect's calls where a `5xx` or `429` is
/// the provider being unavailable rather than an OAuth answer
/// ([`ProviderHttp::send_available`]). A type, not a closure: a closure's
/// future would tie its lifetime to the call in a way the server's `Send`
/// request future cannot express.
pub struct AvailableOnly<'a>(pub &'a ProviderHttp);

impl<'c> AsyncHttpClient<'c> for AvailableOnly<'_> {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.0.send_available(request))
    }
}

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// `response` with its whole body, refused past `max_body` bytes.
pub(crate) async fn read_limited<B>(
    response: http::Response<B>,
    max_body: usize,
) -> Result<HttpResponse, HttpFailure>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, max_body).collect().await.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            HttpFailure::TooLarge(max_body)
        } else {
            HttpFailure::Request(e.to_string())
        }
    })?;
    Ok(http::Response::from_parts(parts, body.to_bytes().to_vec()))
}

fn redacted_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

fn describe_client_error(err: &hyper_util::client::legacy::Error) -> HttpFailure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return HttpFailure::ConnectionRefused;
        }
        source = e.source();
    }
    let chain = crate::error_chain(err);
    if err.is_connect() {
        HttpFailure::Connect(chain)
    } else {
        HttpFailure::Request(chain)
    }
}

/// The JSON object a successful `response` from `url` holds.
pub fn json_object(
    url: &Url,
    response: &HttpResponse,
) -> Result<serde_json::Map<String, serde_json::Value>, HttpError> {
    let fail = |reason| HttpError::at(url, reason);
    if !response.status().is_success() {
        return Err(fail(HttpFailure::Status(response.status())));
    }
    serde_json::from_slice(response.body())
        // serde_json quotes a mistyped string value whole: bound it.
        .map_err(|e| fail(HttpFailure::NotJson(super::token::clip(&e.to_string()))))
}

/// How long the response may be reused, from `Cache-Control` (RFC 9111
/// §5.2.2.1): `max-age`; none when `no-store` or `no-cache` (read it again
/// soon) is said or the header is missing or unreadable.
pub fn max_age(response: &HttpResponse) -> Option<std::time::Duration> {
    let mut max_age = None;
    for value in response.headers().get_all(http::header::CACHE_CONTROL) {
        for directive in value.to_str().ok()?.split(',') {
            let directive = directive.trim();
            let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "no-store" | "no-cache" => return Some(std::time::Duration::ZERO),
                "max-age" => {
                    let seconds: u64 = arg.trim().trim_matches('"').parse().ok()?;
                    max_age = Some(std::time::Duration::from_secs(seconds));
                }
                _ => {}
            }
        }
    }
    max_age
}
