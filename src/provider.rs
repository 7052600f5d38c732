//! Identity providers: the registry the app holds, and the OpenID Connect flow
//! (`oidc`) over the one HTTP client for providers (`http`).
//!
//! [`Providers::start`] discovers every provider in the background, so the proxy
//! listens at once and `/oauth2/readyz` tells when sign-in can work.

pub mod http;
mod oidc;

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

pub use oidc::{Callback, FlowSecrets, Provider, SignedIn};

use crate::config::Config;
use http::{HttpError, ProviderHttp};

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Why a sign-in with a provider failed. Never carries a token, code or secret.
#[derive(thiserror::Error, Debug)]
pub enum ProviderError {
    #[error("provider {provider} is not ready: its metadata has not been loaded yet")]
    NotReady { provider: String },
    #[error("provider {provider} could not be reached: {source}")]
    Unreachable {
        provider: String,
        #[source]
        source: HttpError,
    },
    #[error("the provider refused the code: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    TokenRejected {
        error: String,
        description: Option<String>,
    },
    #[error("the provider's token response is invalid: {0}")]
    InvalidTokenResponse(String),
    #[error("the id_token was refused: {0}")]
    InvalidIdToken(String),
    #[error("provider {provider}: userinfo failed: {source}")]
    Userinfo {
        provider: String,
        #[source]
        source: HttpError,
    },
    #[error("userinfo describes a different user (sub) than the id_token")]
    UserinfoSubMismatch,
    #[error("the authorization response's iss does not name this provider (RFC 9207)")]
    IssuerMismatch,
}

/// Every configured provider. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Providers {
    providers: Arc<[Arc<Provider>]>,
    ready: Arc<Notify>,
}

impl Providers {
    /// Spawns background discovery (metadata + JWKS) per provider, retrying with
    /// backoff from 1 s to 30 s and logging what to fix. Needs a Tokio runtime.
    pub fn start(config: &Config) -> Self {
        let http = match ProviderHttp::new() {
            Ok(http) => http,
            Err(e) => {
                tracing::error!(error = %e, "cannot set up TLS for calls to providers");
                return Self {
                    providers: Arc::new([]),
                    ready: Arc::new(Notify::new()),
                };
            }
        };
        let providers: Arc<[Arc<Provider>]> = config
            .providers
            .iter()
            .map(|p| Arc::new(Provider::new(p.clone(), http.clone())))
            .collect();
        let ready = Arc::new(Notify::new());
        for provider in providers.iter() {
            tokio::spawn(discover_until_ready(
                Arc::downgrade(provider),
                ready.clone(),
            ));
        }
        Self { providers, ready }
    }

    pub fn get(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.id() == id).map(|p| &**p)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.providers.iter().map(|p| &**p)
    }

    /// Every provider's metadata and JWKS are loaded.
    pub fn all_ready(&self) -> bool {
        self.providers.iter().all(|p| p.is_ready())
    }

    /// Waits until [`all_ready`](Self::all_ready), at most `timeout`; returns it.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.ready.notified();
                if self.all_ready() {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

/// Stops when discovery succeeds or the provider is dropped.
async fn discover_until_ready(provider: Weak<Provider>, ready: Arc<Notify>) {
    let mut delay = RETRY_FIRST;
    loop {
        let Some(p) = provider.upgrade() else { return };
        match p.discover().await {
            Ok(()) => {
                tracing::info!(provider = %p.id(), "provider metadata and keys loaded");
                ready.notify_waiters();
                return;
            }
            Err(e) => tracing::error!(
                provider = %p.id(),
                url = %p.discovery_url(),
                error = %e,
                "cannot load the provider's metadata; check providers.{}.issuer and that the provider is reachable (retrying in {}s)",
                p.id(),
                delay.as_secs(),
            ),
        }
        drop(p);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
    }
}

#[cfg(test)]
mod tests;
