//! Redis key names. None holds a session id, a `sub` or a `sid` as such:
//!
//! - `<prefix>s:<SHA-256(session id) hex>`: the sealed session. The id is 256
//!   random bits, so its digest reveals nothing and cannot be reversed.
//! - `<prefix>sub:<HMAC(provider, sub) hex>` and `<prefix>sid:<HMAC(provider, sid)
//!   hex>`: sets of the digests of that user's (or provider session's)
//!   sessions. `sub` and `sid` can be guessed, so a keyed hash: the key is
//!   derived from `session.secret`, and every previous secret's key is tried
//!   when ending sessions, so a rotation keeps "sign out everywhere" whole.
//! - `<prefix>invalidate`: the pub/sub channel; messages are session digests.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::SessionConfig;

/// Changing a derivation means a new info string (and an empty store).
const INDEX_KEY_INFO: &[u8] = b"portcullis redis index v1";

/// SHA-256 of a session id: names its record, and travels in invalidations.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionDigest([u8; 32]);

impl SessionDigest {
    pub fn of(session_id: &str) -> Self {
        Self(Sha256::digest(session_id.as_bytes()).into())
    }

    pub(super) fn hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses what [`Self::hex`] wrote; anything else is `None`.
    pub(super) fn from_hex(text: &[u8]) -> Option<Self> {
        if text.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(bytes))
    }
}

impl std::fmt::Debug for SessionDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionDigest({})", &self.hex()[..12])
    }
}

/// Which index a set belongs to.
#[derive(Clone, Copy)]
pub(super) enum Index {
    Sub,
    Sid,
}

pub(super) struct Names {
    prefix: String,
    /// HMAC keys for index names: the current secret's first.
    index_keys: Vec<[u8; 32]>,
}

impl Names {
    pub(super) fn new(prefix: &str, session: &SessionConfig) -> Self {
        let secrets = std::iter::once(&session.secret).chain(&session.previous_secrets);
        Self {
            prefix: prefix.to_owned(),
            index_keys: secrets.map(|s| index_key(s.expose())).collect(),
        }
    }

    pub(super) fn record(&self, digest: &SessionDigest) -> String {
        format!("{}s:{}", self.prefix, digest.hex())
    }

    pub(super) fn channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    /// The index set a new session joins (under the current secret's key).
    pub(super) fn index(&self, index: Index, provider: &str, value: &str) -> String {
        self.index_with(&self.index_keys[0], index, provider, value)
    }

    /// The index set's name under every secret's key: where sessions saved
    /// before a rotation are listed.
    pub(super) fn indexes(&self, index: Index, provider: &str, value: &str) -> Vec<String> {
        self.index_keys
            .iter()
            .map(|key| self.index_with(key, index, provider, value))
            .collect()
    }

    fn index_with(&self, key: &[u8; 32], index: Index, provider: &str, value: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(key).expect("HMAC-SHA256 takes a key of any length");
        // Length-prefixed, so that no (provider, value) pair reads as another.
        mac.update(&(provider.len() as u64).to_be_bytes());
        mac.update(provider.as_bytes());
        mac.update(value.as_bytes());
        let kind = match index {
            Index::Sub => "sub",
            Index::Sid => "sid",
        };
        format!(
            "{}{kind}:{}",
            self.prefix,
            hex(&mac.finalize().into_bytes())
        )
    }
}

/// HKDF-SHA256 (RFC 5869) of the secret, for another purpose than the
/// session cipher's key (another info string).
fn index_key(secret: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, secret.as_bytes())
        .expand(INDEX_KEY_INFO, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}
