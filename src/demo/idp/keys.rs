//! Signing keys: a process-wide pool of RSA keys, each with its `kid` and JWK,
//! and the `/jwks` endpoint, which publishes only the provider's current key.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Response, StatusCode};
use jsonwebtoken::EncodingKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::State;
use super::responses::{json_response, text};
use crate::Body;

const RSA_BITS: usize = 2048;

/// RSA key generation is slow, so keys are shared by every provider in the process.
static KEY_POOL: Mutex<Vec<Arc<PoolKey>>> = Mutex::new(Vec::new());

pub(super) struct PoolKey {
    pub(super) kid: String,
    pub(super) encoding: EncodingKey,
    pub(super) public_pem: String,
    jwk: Value,
}

pub(super) async fn pool_key(index: usize) -> Result<Arc<PoolKey>, String> {
    tokio::task::spawn_blocking(move || {
        let mut pool = KEY_POOL.lock().unwrap_or_else(PoisonError::into_inner);
        while pool.len() <= index {
            pool.push(Arc::new(generate_key()?));
        }
        Ok(pool[index].clone())
    })
    .await
    .map_err(|e| format!("key generation failed: {e}"))?
}

fn generate_key() -> Result<PoolKey, String> {
    let private =
        rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS).map_err(|e| e.to_string())?;
    let der = private.to_pkcs1_der().map_err(|e| e.to_string())?;
    let public = private.to_public_key();
    let public_pem = public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?;
    let n = public.n().to_bytes_be();
    let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(&n)[..9]);
    let jwk = json!({
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(&n),
        "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    });
    let encoding = EncodingKey::from_rsa_der(der.as_bytes());
    Ok(PoolKey {
        kid,
        encoding,
        public_pem,
        jwk,
    })
}

pub(super) async fn jwks(state: &State) -> Response<Body> {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let index = state.inner().key_index;
    match pool_key(index).await {
        Ok(key) => json_response(StatusCode::OK, json!({ "keys": [key.jwk] })),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}
