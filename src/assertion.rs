//! The signed identity assertion (issue #13): routes with `assertion = true`
//! send `X-Portcullis-Assertion`, an ES256 JWT naming the user, so that an app
//! can check who is calling even if something other than portcullis could
//! reach it. Its public keys are served at `GET /oauth2/jwks.json`.
//!
//! The key is `assertion_key_file`'s, or derived from `session.secret` with
//! HKDF, so that every replica with the same secret signs with the same key
//! and a restart keeps it. Keys derived from `session.previous_secrets` are
//! published too, so assertions signed just before a rotation still verify.
//!
//! Signed once per session and route, and again when less than a third of
//! its lifetime remains (see [`Cached`]).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hkdf::Hkdf;
use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::EncodePrivateKey;
use rand::RngCore;
use rand::rngs::OsRng;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::SessionConfig;
use crate::session::Session;

/// The header the app receives; stripped from every incoming request.
pub const ASSERTION_HEADER: &str = "x-portcullis-assertion";

/// HKDF info for the key derived from a session secret. Changing it changes
/// every derived key (apps holding the old JWKS must fetch it again).
const DERIVATION_INFO: &[u8] = b"portcullis assertion signing key v1";

/// How to make a key `assertion_key_file` accepts.
const MAKE_KEY: &str = "openssl ecparam -genkey -name prime256v1 -noout -out assertion-key.pem";

/// A P-256 private key, ready to sign ES256, and its public JWK.
pub struct SigningKey {
    encoding: EncodingKey,
    /// RFC 7638 thumbprint of the public key.
    kid: String,
    jwk: serde_json::Value,
}

impl SigningKey {
    /// From a PEM file's text: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE
    /// KEY`, as `openssl ecparam` writes). Anything but a P-256 key is
    /// refused, with the command that makes one.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let key = p256::SecretKey::from_pem(pem).map_err(|e| {
            format!(
                "is not a P-256 (prime256v1) private key in PEM, PKCS#8 \"PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\" ({e}); ES256 signs with P-256 only: make a key with `{MAKE_KEY}`"
            )
        })?;
        Ok(Self::new(&key))
    }

    /// The key every replica with `secret` derives: HKDF-SHA256 of the secret
    /// (no salt, as for the session cipher) taken as a P-256 scalar; in the
    /// vanishingly rare case it is not one (zero, or not below the group
    /// order), again with a counter byte after the info.
    pub fn derived(secret: &str) -> Self {
        let hkdf = Hkdf::<Sha256>::new(None, secret.as_bytes());
        let key = (0..=u8::MAX)
            .find_map(|counter| {
                let mut scalar = Zeroizing::new([0u8; 32]);
                let counter = [counter];
                let info: &[&[u8]] = match counter {
                    [0] => &[DERIVATION_INFO],
                    _ => &[DERIVATION_INFO, &counter],
                };
                hkdf.expand_multi_info(info, &mut *scalar)
                    .expect("32 bytes is a valid HKDF-SHA256 output length");
                p256::SecretKey::from_slice(&*scalar).ok()
            })
            .expect("one of 256 HKDF outputs is a P-256 scalar");
        Self::new(&key)
    }

    fn new(key: &p256::SecretKey) -> Self {
        let der = key.to_pkcs8_der().expect("a P-256 key encodes as PKCS#8");
        let point = key.public_key().to_sec1_point(false);
        let coordinate = |c: Option<&p256::FieldBytes>| {
            URL_SAFE_NO_PAD.encode(c.expect("an uncompressed point has both coordinates"))
        };
        let (x, y) = (coordinate(point.x()), coordinate(point.y()));
        // RFC 7638 §3.2: the required members in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical));
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "use": "sig", "alg": "ES256", "kid": kid,
        });
        Self {
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            kid,
            jwk,
        }
    }

    /// The public key's RFC 7638 thumbprint, its `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

impl std::fmt::Debug for SigningKey {
    // Never the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// One route's assertions: its key, `iss`, `aud` and lifetime.
#[derive(Clone)]
pub struct Signer {
    key: Arc<SigningKey>,
    issuer: Arc<str>,
    audience: Arc<str>,
    lifetime: u64,
}

/// Same key, claims and lifetime: the assertions it made are still good.
impl PartialEq for Signer {
    fn eq(&self, other: &Self) -> bool {
        self.key.kid == other.key.kid
            && self.issuer == other.issuer
            && self.audience == other.audience
            && self.lifetime == other.lifetime
    }
}

impl Eq for Signer {}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.key.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// The claims of an assertion (README, "Signed identity assertion").
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
    provider: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// A signed assertion, as the header value, and its `exp`.
pub struct Stamped {
    value: HeaderValue,
    expires_at: u64,
}

impl Signer {
    /// An assertion for `session` issued at `now` (Unix seconds); `None`
    /// only if signing fails, which a valid key does not.
    pub fn sign(&self, session: &Session, now: u64) -> Option<Stamped> {
        let mut jti = [0u8; 16];
        OsRng.fill_bytes(&mut jti);
        let identity = &session.identity;
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: &identity.sub,
            email: identity.email.as_deref(),
            groups: &identity.groups,
            provider: &session.provider,
            iat: now,
            exp: now + self.lifetime,
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key.kid.clone());
        let signed = jsonwebtoken::encode(&header, &claims, &self.key.encoding)
            .map_err(|e| tracing::error!(error = %e, "cannot sign the identity assertion"))
            .ok()?;
        // Base64url and dots: always a valid header value.
        let value = HeaderValue::from_maybe_shared(Bytes::from(signed)).ok()?;
        Some(Stamped {
            value,
            expires_at: claims.exp,
        })
    }

    /// Re-signed when less than this remains, so that an app never receives
    /// one about to expire on its way.
    fn renew_within(&self) -> u64 {
        self.lifetime / 3
    }
}

/// The latest assertion for one session and route: one atomic load per
/// request, replaced when near its expiry.
#[derive(Default)]
pub struct Cached(ArcSwapOption<Stamped>);

impl Cached {
    /// The assertion to send at `now` (Unix seconds), signed first when there
    /// is none yet or it nears expiry. Two requests racing may both sign;
    /// either result is good.
    pub fn current(&self, signer: &Signer, session: &Session, now: u64) -> Option<HeaderValue> {
        if let Some(stamped) = &*self.0.load()
            && stamped.expires_at.saturating_sub(now) >= signer.renew_within()
        {
            return Some(stamped.value.clone());
        }
        let stamped = signer.sign(session, now)?;
        let value = stamped.value.clone();
        self.0.store(Some(Arc::new(stamped)));
        Some(value)
    }
}

/// The keys of one configuration: each route's signer, and the JWKS that
/// publishes them.
pub struct Keys<'c> {
    session: &'c SessionConfig,
    issuer: Arc<str>,
    /// `session.secret`'s key, once some route needs it.
    derived: Option<Arc<SigningKey>>,
    /// Every key some route signs with, once each.
    used: Vec<Arc<SigningKey>>,
}

impl<'c> Keys<'c> {
    /// `iss` is `public_url` without its trailing `/`: it has no path, so
    /// that is its origin (`https://auth.example.com`).
    pub fn new(session: &'c SessionConfig, public_url: &url::Url) -> Self {
        Self {
            session,
            issuer: public_url.as_str().trim_end_matches('/').into(),
            derived: None,
            used: Vec::new(),
        }
    }

    /// The signer of a route with `assertion` settings.
    pub fn signer(&mut self, settings: &crate::config::AssertionConfig) -> Signer {
        let key = match &settings.key_file {
            Some(file) => file.key.clone(),
            None => self
                .derived
                .get_or_insert_with(|| Arc::new(SigningKey::derived(self.session.secret.expose())))
                .clone(),
        };
        if !self.used.iter().any(|k| k.kid == key.kid) {
            self.used.push(key.clone());
        }
        Signer {
            key,
            issuer: self.issuer.clone(),
            audience: settings.audience.as_str().into(),
            lifetime: settings.lifetime.as_secs(),
        }
    }

    /// `{"keys":[...]}`: every key in use, then, when the derived key is,
    /// those of `session.previous_secrets` (verify-only). `None` when no
    /// route sends an assertion.
    pub fn jwks(self) -> Option<Bytes> {
        if self.used.is_empty() {
            return None;
        }
        let previous = self
            .derived
            .is_some()
            .then(|| {
                self.session
                    .previous_secrets
                    .iter()
                    .map(|s| SigningKey::derived(s.expose()))
            })
            .into_iter()
            .flatten();
        let mut keys: Vec<serde_json::Value> = Vec::new();
        let mut kids: Vec<String> = Vec::new();
        let all = self
            .used
            .iter()
            .map(|k| (k.kid.clone(), k.jwk.clone()))
            .chain(previous.map(|k| (k.kid, k.jwk)));
        for (kid, jwk) in all {
            if !kids.contains(&kid) {
                kids.push(kid);
                keys.push(jwk);
            }
        }
        Some(Bytes::from(json!({ "keys": keys }).to_string()))
    }
}

/// How long an assertion is valid, at most and at least.
pub const LIFETIMES: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(30)..=Duration::from_secs(3600);

#[cfg(test)]
mod tests;
