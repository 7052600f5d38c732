//! portcullis: an authentication sidecar. A reverse proxy that signs users in with
//! OpenID Connect and hands their identity to the upstream app in trusted headers.
//!
//! The modules mirror the request flow (DESIGN.md §1, §7): `server` accepts and
//! dispatches, `auth` serves `/oauth2/*`, `proxy` runs the phases for everything
//! else and `upstream` streams to the app. `respond` is the one place where an
//! error becomes a status and a page.

// pub mod auth;  (lead: enabled once the parts land)
pub mod config;
pub mod demo;
pub mod headers;
pub mod identity;
pub mod pages;
pub mod policy;
pub mod provider;
// pub mod proxy;
pub mod redirect;
pub mod respond;
pub mod server;
pub mod session;
pub mod upstream;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type on both sides of the proxy: streamed bodies from hyper,
/// and small bodies portcullis makes itself.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A body holding `bytes` whole (portcullis' own pages and JSON).
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed()
}

/// Seconds since the Unix epoch: the clock of sessions, flows and tokens.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

