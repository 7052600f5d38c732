//! The cookie codec (DESIGN §4, §8.10): AES-256-GCM under keys derived from the
//! session secrets, the cookie name as associated data, a version byte first.
//! Follows cookie-rs `private.rs`, plus the version byte.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use sha2::Sha256;

use crate::config::SessionConfig;

/// Changing the derivation or the layout means a new version byte and info string.
const VERSION: u8 = 1;
const HKDF_INFO: &[u8] = b"portcullis session v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Larger values are refused before decoding: no cookie of ours comes near.
const MAX_VALUE_LEN: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("cookie value is not base64url or is too short or too long")]
    Malformed,
    #[error("cookie value has an unknown version")]
    UnknownVersion,
    #[error("cookie value does not decrypt under any session secret")]
    Undecryptable,
}

/// Ciphers for the current secret and every previous one, built once.
pub struct SessionKeys {
    current: Aes256Gcm,
    previous: Vec<Aes256Gcm>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("previous", &self.previous.len())
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    pub fn new(config: &SessionConfig) -> Self {
        Self::from_secrets(
            config.secret.expose(),
            config.previous_secrets.iter().map(|s| s.expose()),
        )
    }

    fn from_secrets<'a>(current: &str, previous: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            current: cipher_for(current),
            previous: previous.into_iter().map(cipher_for).collect(),
        }
    }

    /// `base64url(version || nonce || ciphertext+tag)`, always under the current key,
    /// with a fresh random nonce (96 bits, NIST SP 800-38D §8.2.2).
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext,
            aad: name.as_bytes(),
        };
        // AES-GCM refuses only messages over 64 GiB; ours are a few KiB.
        let sealed = self
            .current
            .encrypt(&nonce, payload)
            .expect("AES-GCM seals any message under 64 GiB");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Decrypts a value sealed for the cookie `name` under the current or a previous secret.
    /// `value` is the cookie's bytes as sent; anything but base64url is refused.
    pub fn open(&self, name: &str, value: impl AsRef<[u8]>) -> Result<Vec<u8>, CodecError> {
        let value = value.as_ref();
        if value.len() > MAX_VALUE_LEN {
            return Err(CodecError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| CodecError::Malformed)?;
        let Some((&version, rest)) = raw.split_first() else {
            return Err(CodecError::Malformed);
        };
        if version != VERSION {
            return Err(CodecError::UnknownVersion);
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(CodecError::Malformed);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::from_slice(nonce);
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find_map(|cipher| {
                let payload = Payload {
                    msg: sealed,
                    aad: name.as_bytes(),
                };
                cipher.decrypt(nonce, payload).ok()
            })
            .ok_or(CodecError::Undecryptable)
    }
}

/// HKDF-SHA256 (RFC 5869) turns a secret of any length into a 256-bit key. No
/// salt: the secret is already high-entropy (RFC 5869 §3.1).
fn cipher_for(secret: &str) -> Aes256Gcm {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, secret.as_bytes())
        .expand(HKDF_INFO, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Aes256Gcm::new(&key.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const OLD_SECRET: &str = "an older secret of at least 32 bytes!";

    fn keys() -> SessionKeys {
        SessionKeys::from_secrets(SECRET, [])
    }

    fn decode(value: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(value).unwrap()
    }

    #[test]
    fn roundtrip() {
        let k = keys();
        let sealed = k.seal("_portcullis", b"hello");
        assert_eq!(k.open("_portcullis", &sealed).unwrap(), b"hello");
        assert_eq!(decode(&sealed)[0], VERSION);
        assert_eq!(decode(&sealed).len(), 1 + NONCE_LEN + 5 + TAG_LEN);
    }

    #[test]
    fn empty_plaintext_roundtrips() {
        let k = keys();
        assert_eq!(k.open("c", k.seal("c", b"")).unwrap(), b"");
    }

    #[test]
    fn every_tampered_byte_is_refused() {
        let k = keys();
        let raw = decode(&k.seal("c", b"some session json"));
        // Covers the version byte, the nonce, the ciphertext and the tag.
        for i in 0..raw.len() {
            let mut t = raw.clone();
            t[i] ^= 0x01;
            let expected = if i == 0 {
                CodecError::UnknownVersion
            } else {
                CodecError::Undecryptable
            };
            assert_eq!(
                k.open("c", URL_SAFE_NO_PAD.encode(&t)),
                Err(expected),
                "byte {i}"
            );
        }
    }

    #[test]
    fn truncation_is_refused() {
        let k = keys();
        let sealed = k.seal("c", b"some session json");
        for len in 0..sealed.len() {
            assert!(k.open("c", &sealed[..len]).is_err(), "length {len}");
        }
        let raw = decode(&sealed);
        for len in 0..raw.len() {
            assert!(
                k.open("c", URL_SAFE_NO_PAD.encode(&raw[..len])).is_err(),
                "raw length {len}"
            );
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        let k = keys();
        for bad in ["", "!!!!", "a", "abc=", "ab+/", "é", "AQ"] {
            assert_eq!(k.open("c", bad), Err(CodecError::Malformed), "{bad:?}");
        }
        // Cookie bytes arrive unchecked: not even UTF-8.
        let mut not_utf8 = k.seal("c", b"x").into_bytes();
        not_utf8[5] = 0xff;
        assert_eq!(k.open("c", &not_utf8), Err(CodecError::Malformed));
        assert_eq!(
            k.open("c", "A".repeat(MAX_VALUE_LEN + 4)),
            Err(CodecError::Malformed)
        );
        let mut v2 = decode(&k.seal("c", b"x"));
        v2[0] = 2;
        assert_eq!(
            k.open("c", URL_SAFE_NO_PAD.encode(v2)),
            Err(CodecError::UnknownVersion)
        );
    }

    #[test]
    fn value_cannot_move_to_another_cookie_name() {
        let k = keys();
        let sealed = k.seal("_portcullis", b"x");
        assert_eq!(
            k.open("_portcullis_1", &sealed),
            Err(CodecError::Undecryptable)
        );
        assert_eq!(k.open("other", &sealed), Err(CodecError::Undecryptable));
    }

    #[test]
    fn foreign_secret_cannot_open() {
        let sealed = keys().seal("c", b"x");
        let other = SessionKeys::from_secrets("ffffffffffffffffffffffffffffffff", []);
        assert_eq!(other.open("c", &sealed), Err(CodecError::Undecryptable));
    }

    #[test]
    fn previous_secrets_open_but_never_seal() {
        let old = SessionKeys::from_secrets(OLD_SECRET, []);
        let rotated = SessionKeys::from_secrets(SECRET, [OLD_SECRET]);
        let from_before = old.seal("c", b"x");
        assert_eq!(rotated.open("c", &from_before).unwrap(), b"x");
        let fresh = rotated.seal("c", b"y");
        assert_eq!(old.open("c", &fresh), Err(CodecError::Undecryptable));
        assert_eq!(keys().open("c", &fresh).unwrap(), b"y");
    }

    #[test]
    fn two_seals_differ() {
        let k = keys();
        let a = decode(&k.seal("c", b"same"));
        let b = decode(&k.seal("c", b"same"));
        assert_ne!(a[1..1 + NONCE_LEN], b[1..1 + NONCE_LEN]);
        assert_ne!(a, b);
    }

    /// Sealed once with SECRET; must open forever, or an upgrade would sign everyone out.
    const STORED: &str = "AT7IDHfJY-gLLf0S6Os8m64cTKOhp6WmlmUTkyzK--cXLbSSUQrnIx6c";

    #[test]
    fn stored_value_keeps_opening() {
        assert_eq!(
            keys().open("_portcullis", STORED).unwrap(),
            b"portcullis v1"
        );
    }

    #[test]
    fn config_secrets_are_used() {
        let config = crate::session::tests::session_config(SECRET, &[OLD_SECRET]);
        let k = SessionKeys::new(&config);
        assert_eq!(k.open("_portcullis", STORED).unwrap(), b"portcullis v1");
        let old = SessionKeys::from_secrets(OLD_SECRET, []).seal("c", b"z");
        assert_eq!(k.open("c", &old).unwrap(), b"z");
    }
}
