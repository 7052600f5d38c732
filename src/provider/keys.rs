//! A provider's signing keys (DESIGN §10 "Keys and JWS in one place"): the JWKS
//! snapshot every signature check reads, and the coalesced, rate-limited re-fetch
//! when a token names a key the snapshot does not hold.
//!
//! The JWKS is an `ArcSwap` snapshot: the request path never takes a lock. Only a
//! token signed by an unknown key takes the re-fetch mutex. Coalesced and
//! rate-limited, re-fetching still follows a genuine rotation within
//! [`JWKS_REFETCH_INTERVAL`]: a check that meets an unknown key tries the keys of
//! any fetch since, and fails only once the keys of a fetch begun after it met the
//! unknown key do not verify it (waiting out the interval for that fetch).

use crate::metrics::{ProviderCall, ProviderMetrics};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
use openidconnect::core::CoreJsonWebKeySet;
use openidconnect::{DiscoveryError, JsonWebKeySet, JsonWebKeySetUrl};
use serde_json::Value;
use tokio::time::Instant;

use super::http::{HttpError, ProviderHttp};

/// JWKS fetches are at least this far apart: a rotation is followed within it,
/// and unknown `kid`s cannot make portcullis hammer the provider.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// Why [`Keys::verify`] could not get an answer from `check`.
#[derive(Debug)]
pub(super) enum KeysError<E> {
    /// No JWKS has been loaded yet (discovery has not finished).
    NotLoaded,
    /// The token's key is in no JWKS fetched since the token was first checked.
    UnknownKey,
    /// `check` failed for another reason.
    Check(E),
}

/// One JWKS as fetched (openidconnect checks id_tokens with it), and its
/// signing keys made ready for `jsonwebtoken` (access and logout tokens) once
/// per fetch instead of at every token.
pub(super) struct KeySet {
    pub jwks: CoreJsonWebKeySet,
    /// Each signing key (`use` not `enc`) with its `kid`.
    signing: Vec<(Option<String>, DecodingKey)>,
}

impl KeySet {
    pub(super) fn new(jwks: CoreJsonWebKeySet) -> Self {
        let keys = serde_json::to_value(&jwks).ok();
        let signing = keys
            .as_ref()
            .and_then(|set| set.get("keys"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|key| key.get("use").and_then(Value::as_str) != Some("enc"))
            .filter_map(|key| {
                let kid = key.get("kid").and_then(Value::as_str).map(str::to_owned);
                let jwk = serde_json::from_value::<Jwk>(key.clone()).ok()?;
                Some((kid, DecodingKey::from_jwk(&jwk).ok()?))
            })
            .collect();
        Self { jwks, signing }
    }

    /// The signing keys named by `kid` (without one: every signing key).
    pub(super) fn decoding_keys<'k>(
        &'k self,
        kid: Option<&'k str>,
    ) -> impl Iterator<Item = &'k DecodingKey> {
        self.signing
            .iter()
            .filter(move |(id, _)| kid.is_none() || id.as_deref() == kid)
            .map(|(_, key)| key)
    }
}

pub(super) struct Keys {
    /// The provider id, for logs.
    provider: String,
    http: ProviderHttp,
    metrics: ProviderMetrics,
    jwks_uri: ArcSwapOption<JsonWebKeySetUrl>,
    jwks: ArcSwapOption<KeySet>,
    /// When the last JWKS fetch began (successful or not). Held across a re-fetch,
    /// so that concurrent unknown `kid`s queue for it and try its keys.
    fetched_at: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("provider", &self.provider)
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

impl Keys {
    pub(super) fn new(provider: &str, http: ProviderHttp, metrics: ProviderMetrics) -> Self {
        Self {
            provider: provider.to_owned(),
            http,
            metrics,
            jwks_uri: ArcSwapOption::empty(),
            jwks: ArcSwapOption::empty(),
            fetched_at: tokio::sync::Mutex::new(None),
        }
    }

    pub(super) fn is_loaded(&self) -> bool {
        self.jwks.load().is_some()
    }

    /// Fetches the JWKS at `url` (at discovery); counts as a fetch for the pacing.
    /// The keys are used only once [`install`](Self::install)ed.
    pub(super) async fn fetch(&self, url: &JsonWebKeySetUrl) -> Result<CoreJsonWebKeySet, String> {
        *self.fetched_at.lock().await = Some(Instant::now());
        let fetch = JsonWebKeySet::fetch_async(url, &self.http);
        self.metrics
            .time(ProviderCall::Jwks, fetch)
            .await
            .map_err(|e| describe_discovery_error(&e))
    }

    /// Makes `jwks`, fetched from `url`, the keys every check uses; re-fetches go to `url`.
    pub(super) fn install(&self, url: JsonWebKeySetUrl, jwks: CoreJsonWebKeySet) {
        self.jwks_uri.store(Some(Arc::new(url)));
        self.jwks.store(Some(Arc::new(KeySet::new(jwks))));
    }

    /// Runs `check` with the current keys. When it fails because the token's key
    /// is not among them (`unknown_key`), re-fetches (coalesced and paced, see
    /// [`refetch`](Self::refetch)) and tries again, until a fetch begun after the
    /// first failure does not have the key either.
    pub(super) async fn verify<T, E>(
        &self,
        mut check: impl FnMut(&KeySet) -> Result<T, E>,
        unknown_key: impl Fn(&E) -> bool,
    ) -> Result<T, KeysError<E>> {
        let mut jwks = self.jwks.load_full().ok_or(KeysError::NotLoaded)?;
        let mut unknown_kid_at = None;
        loop {
            match check(&jwks) {
                Ok(value) => return Ok(value),
                Err(e) if unknown_key(&e) => {
                    let since = *unknown_kid_at.get_or_insert_with(Instant::now);
                    match self.refetch(&jwks, since).await {
                        Some(newer) => jwks = newer,
                        None => return Err(KeysError::UnknownKey),
                    }
                }
                Err(e) => return Err(KeysError::Check(e)),
            }
        }
    }

    /// Keys to try after `tried` failed to verify a token whose key was unknown
    /// at `since`: the current keys when they have changed since (a concurrent
    /// fetch), else those of a new fetch, begun no sooner than
    /// [`JWKS_REFETCH_INTERVAL`] after the last; `None` once `tried` came from a
    /// fetch begun after `since` (or that fetch failed): nothing newer to learn.
    async fn refetch(&self, tried: &Arc<KeySet>, since: Instant) -> Option<Arc<KeySet>> {
        let mut fetched_at = self.fetched_at.lock().await;
        let current = self.jwks.load_full()?;
        if !Arc::ptr_eq(&current, tried) {
            return Some(current);
        }
        if fetched_at.is_some_and(|at| at > since) {
            return None;
        }
        if let Some(at) = *fetched_at {
            tokio::time::sleep_until(at + JWKS_REFETCH_INTERVAL).await;
        }
        *fetched_at = Some(Instant::now());
        let url = self.jwks_uri.load_full()?;
        let fetch = JsonWebKeySet::fetch_async(&url, &self.http);
        match self.metrics.time(ProviderCall::Jwks, fetch).await {
            Ok(jwks) => {
                let jwks = Arc::new(KeySet::new(jwks));
                self.jwks.store(Some(jwks.clone()));
                Some(jwks)
            }
            Err(e) => {
                tracing::warn!(provider = %self.provider, error = %describe_discovery_error(&e), "could not re-fetch the JWKS");
                None
            }
        }
    }
}

pub(super) fn describe_discovery_error(e: &DiscoveryError<HttpError>) -> String {
    match e {
        DiscoveryError::Request(e) => e.to_string(),
        DiscoveryError::Response(_, _, message) => message.clone(),
        DiscoveryError::Parse(e) => format!("invalid metadata document: {e}"),
        DiscoveryError::UrlParse(e) => format!("invalid URL: {e}"),
        DiscoveryError::Validation(e) | DiscoveryError::Other(e) => e.clone(),
        other => other.to_string(),
    }
}
