use std::time::Duration;

use super::*;
use crate::config::{AssertionConfig, AssertionKeyFile};
use crate::session::tests::{a_session, session_config};

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const OLD_SECRET: &str = "an older secret of at least 32 bytes!";

/// Made by `openssl ecparam -genkey -name prime256v1 -noout` (SEC1), and the
/// same key through `openssl pkcs8 -topk8 -nocrypt` (PKCS#8).
const P256_SEC1: &str = include_str!("testdata/p256-sec1.pem");
const P256_PKCS8: &str = include_str!("testdata/p256-pkcs8.pem");
/// Its public point as `openssl pkey -pubout` printed it: x, then y.
const P256_X: &str = "78c43dd3f2d0d07fb446e3e3f9a51d47c32908de6a0106a6c943a62f8dbb96e1";
const P256_Y: &str = "c038bfbb88884af0c3f1b5f628c1bd1940a0035fe72c33af7b96879e5e1fd5d6";
const P384_SEC1: &str = include_str!("testdata/p384-sec1.pem");
const RSA_PKCS8: &str = include_str!("testdata/rsa-pkcs8.pem");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn settings(key_file: Option<&str>) -> AssertionConfig {
    AssertionConfig {
        audience: "http://app.internal:9000".into(),
        lifetime: Duration::from_secs(300),
        key_file: key_file.map(|pem| AssertionKeyFile {
            path: "assertion-key.pem".into(),
            key: Arc::new(SigningKey::from_pem(pem).unwrap()),
        }),
    }
}

fn public_url() -> url::Url {
    url::Url::parse("https://auth.example.com").unwrap()
}

/// The JWT's header and claims (not verified: the integration tests verify
/// with an independent implementation).
fn parts(jwt: &HeaderValue) -> (serde_json::Value, serde_json::Value) {
    let mut parts = jwt.to_str().unwrap().split('.');
    let mut json =
        || serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    (json(), json())
}

#[test]
fn sec1_and_pkcs8_pem_give_the_same_key_and_its_public_point() {
    let sec1 = SigningKey::from_pem(P256_SEC1).unwrap();
    let pkcs8 = SigningKey::from_pem(P256_PKCS8).unwrap();
    assert_eq!(sec1.kid, pkcs8.kid);
    assert_eq!(sec1.jwk, pkcs8.jwk);
    let coordinate = |name: &str| {
        hex(&URL_SAFE_NO_PAD
            .decode(sec1.jwk[name].as_str().unwrap())
            .unwrap())
    };
    assert_eq!(coordinate("x"), P256_X);
    assert_eq!(coordinate("y"), P256_Y);
    assert_eq!(sec1.jwk["kty"], "EC");
    assert_eq!(sec1.jwk["crv"], "P-256");
    assert_eq!(sec1.jwk["alg"], "ES256");
    assert_eq!(sec1.jwk["use"], "sig");
    assert_eq!(sec1.jwk["kid"], sec1.kid.as_str());
}

#[test]
fn the_kid_is_the_rfc_7638_thumbprint() {
    let key = SigningKey::from_pem(P256_SEC1).unwrap();
    // RFC 7638 §3: SHA-256 of the required members, sorted, no whitespace.
    let canonical = serde_json::to_string(&serde_json::json!({
        "crv": "P-256", "kty": "EC", "x": key.jwk["x"], "y": key.jwk["y"],
    }))
    .unwrap();
    assert!(
        canonical.starts_with(r#"{"crv":"P-256","kty":"EC","x":""#),
        "{canonical}"
    );
    assert_eq!(key.kid, URL_SAFE_NO_PAD.encode(Sha256::digest(canonical)));
}

#[test]
fn keys_that_are_not_p256_are_refused_with_the_command_that_makes_one() {
    for (what, pem) in [
        ("P-384", P384_SEC1),
        ("RSA", RSA_PKCS8),
        ("not a key", "hello"),
        ("empty", ""),
    ] {
        let refused = SigningKey::from_pem(pem).unwrap_err();
        assert!(refused.contains("P-256"), "{what}: {refused}");
        assert!(refused.contains(MAKE_KEY), "{what}: {refused}");
    }
}

#[test]
fn the_derived_key_is_the_same_for_a_secret_and_differs_between_secrets() {
    let a = SigningKey::derived(SECRET);
    assert_eq!(a.kid, SigningKey::derived(SECRET).kid);
    assert_ne!(a.kid, SigningKey::derived(OLD_SECRET).kid);
    // And it signs: a key ring can never hold an unusable key.
    let config = session_config(SECRET, &[]);
    let mut keys = Keys::new(&config, &public_url());
    assert!(
        keys.signer(&settings(None))
            .sign(&a_session(1), 1)
            .is_some()
    );
}

#[test]
fn an_assertion_carries_the_documented_header_and_claims() {
    let config = session_config(SECRET, &[]);
    let mut keys = Keys::new(&config, &public_url());
    let signer = keys.signer(&settings(None));
    let mut session = a_session(1000);
    session.identity.email = Some("ada@example.com".into());
    session.identity.groups = vec!["admins".into(), "staff".into()];
    let stamped = signer.sign(&session, 1000).unwrap();
    let (header, claims) = parts(&stamped.value);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], SigningKey::derived(SECRET).kid.as_str());
    assert_eq!(claims["iss"], "https://auth.example.com");
    assert_eq!(claims["aud"], "http://app.internal:9000");
    assert_eq!(claims["sub"], "ada");
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["groups"], serde_json::json!(["admins", "staff"]));
    assert_eq!(claims["provider"], "demo");
    assert_eq!(claims["iat"], 1000);
    assert_eq!(claims["exp"], 1300);
    assert_eq!(stamped.expires_at, 1300);
    let jti = URL_SAFE_NO_PAD
        .decode(claims["jti"].as_str().unwrap())
        .unwrap();
    assert_eq!(jti.len(), 16);
    // Absent rather than empty.
    let (_, bare) = parts(&signer.sign(&a_session(1000), 1000).unwrap().value);
    assert!(
        bare.get("email").is_none() && bare.get("groups").is_none(),
        "{bare}"
    );
}

#[test]
fn a_cached_assertion_is_reused_until_a_third_of_its_lifetime_remains() {
    let config = session_config(SECRET, &[]);
    let mut keys = Keys::new(&config, &public_url());
    let signer = keys.signer(&settings(None));
    let session = a_session(1000);
    let cached = Cached::default();
    let first = cached.current(&signer, &session, 1000).unwrap();
    // 300 s lifetime: reused while at least 100 s remain (until 1200).
    for now in [1000, 1100, 1200] {
        assert_eq!(
            cached.current(&signer, &session, now).unwrap(),
            first,
            "at {now}"
        );
    }
    let renewed = cached.current(&signer, &session, 1201).unwrap();
    assert_ne!(renewed, first);
    let (_, claims) = parts(&renewed);
    assert_eq!(claims["iat"], 1201);
    assert_eq!(claims["exp"], 1501);
    assert_ne!(claims["jti"], parts(&first).1["jti"]);
    assert_eq!(cached.current(&signer, &session, 1300).unwrap(), renewed);
}

#[test]
fn the_jwks_publishes_the_keys_in_use_and_those_of_previous_secrets() {
    let config = session_config(SECRET, &[OLD_SECRET]);
    let kids = |jwks: Bytes| -> Vec<String> {
        let jwks: serde_json::Value = serde_json::from_slice(&jwks).unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let derived = SigningKey::derived(SECRET).kid;
    let previous = SigningKey::derived(OLD_SECRET).kid;
    let from_file = SigningKey::from_pem(P256_SEC1).unwrap().kid;

    // No route sends an assertion: nothing to publish.
    assert!(Keys::new(&config, &public_url()).jwks().is_none());

    // Two routes on the derived key: it once, then the previous secret's.
    let mut keys = Keys::new(&config, &public_url());
    keys.signer(&settings(None));
    keys.signer(&settings(None));
    assert_eq!(
        kids(keys.jwks().unwrap()),
        [derived.clone(), previous.clone()]
    );

    // A key file alone: its key alone.
    let mut keys = Keys::new(&config, &public_url());
    keys.signer(&settings(Some(P256_SEC1)));
    keys.signer(&settings(Some(P256_PKCS8)));
    assert_eq!(kids(keys.jwks().unwrap()), [from_file.as_str()]);

    // One route on a file, another on the derived key: both, and the previous.
    let mut keys = Keys::new(&config, &public_url());
    keys.signer(&settings(Some(P256_SEC1)));
    keys.signer(&settings(None));
    assert_eq!(kids(keys.jwks().unwrap()), [from_file, derived, previous]);
}

#[test]
fn signers_differ_when_their_assertions_would() {
    let config = session_config(SECRET, &[]);
    let mut keys = Keys::new(&config, &public_url());
    let derived = keys.signer(&settings(None));
    assert_eq!(derived, keys.signer(&settings(None)));
    assert_ne!(derived, keys.signer(&settings(Some(P256_SEC1))));
    let mut other = settings(None);
    other.audience = "https://other.example".into();
    assert_ne!(derived, keys.signer(&other));
    other = settings(None);
    other.lifetime = Duration::from_secs(60);
    assert_ne!(derived, keys.signer(&other));
}
