//! Issue #13 item 7: the signed identity assertion. Each one is verified as an
//! app would, against the JWKS fetched over HTTP, with p256's ECDSA (not
//! jsonwebtoken, which signs them), and with the README's Node snippet when
//! node and jose are installed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};
use p256::ecdsa::signature::Verifier;
use portcullis::demo::idp::JwtSigning;
use serde_json::Value;

use crate::support::{Browser, Harness, Resp, Setup};

const HEADER: &str = "x-portcullis-assertion";

async fn upstream() -> SocketAddr {
    portcullis::demo::upstream::start().await.unwrap().0
}

/// Portcullis in front of `upstream` with `assertion = true` and `more` keys.
async fn harness(upstream: SocketAddr, more: &str) -> Harness {
    Harness::with(Setup {
        upstream: Some(upstream),
        upstream_toml: format!("assertion = true\n{more}"),
        ..Setup::default()
    })
    .await
}

async fn get(h: &Harness, b: &mut Browser, path: &str, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![("accept", "application/json")];
    headers.extend_from_slice(extra);
    let resp = b
        .request(Method::GET, &h.url(path), &headers, Default::default())
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{path}: {}", resp.text());
    resp
}

/// The JWKS as an app fetches it.
async fn jwks(h: &Harness) -> Value {
    let resp = Browser::new().get(&h.url("/oauth2/jwks.json")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("cache-control"), Some("public, max-age=300"));
    resp.json()
}

fn kids(jwks: &Value) -> Vec<&str> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect()
}

fn decode(part: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(part).expect("base64url")
}

/// The assertion's claims once its ES256 signature checks out against the
/// key of `jwks` its `kid` names; panics otherwise.
fn verify(jwt: &str, jwks: &Value) -> Value {
    let (signed, signature) = jwt.rsplit_once('.').expect("a compact JWS");
    let (header, claims) = signed.split_once('.').expect("header.claims");
    let header: Value = serde_json::from_slice(&decode(header)).unwrap();
    assert_eq!(header["alg"], "ES256", "{header}");
    assert_eq!(header["typ"], "JWT", "{header}");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("kid {} not in the JWKS {jwks}", header["kid"]));
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert_eq!(
        (key["alg"].as_str(), key["use"].as_str()),
        (Some("ES256"), Some("sig"))
    );
    let mut point = vec![0x04];
    point.extend(decode(key["x"].as_str().unwrap()));
    point.extend(decode(key["y"].as_str().unwrap()));
    let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).expect("a P-256 point");
    // JWS ES256 (RFC 7518 §3.4): r || s, 32 bytes each.
    let signature = p256::ecdsa::Signature::from_slice(&decode(signature)).expect("r || s");
    verifying
        .verify(signed.as_bytes(), &signature)
        .expect("the signature verifies");
    serde_json::from_slice(&decode(claims)).unwrap()
}

fn assertion_of(resp: &Resp) -> String {
    let values = resp.upstream_values(HEADER);
    assert_eq!(values.len(), 1, "one assertion: {values:?}");
    values.into_iter().next().unwrap()
}

#[tokio::test]
async fn the_upstream_gets_an_assertion_that_verifies_against_the_served_jwks() {
    let app = upstream().await;
    let h = harness(app, "").await;
    let mut b = h.signed_in("ada").await;
    let first = assertion_of(&get(&h, &mut b, "/", &[]).await);
    let claims = verify(&first, &jwks(&h).await);
    assert_eq!(
        claims["iss"],
        h.base.as_str(),
        "public_url, no trailing slash"
    );
    assert_eq!(
        claims["aud"],
        format!("http://{app}"),
        "the upstream url as written"
    );
    assert_eq!(claims["sub"], "ada");
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(
        claims["groups"],
        serde_json::json!(["admins", "engineering"])
    );
    assert_eq!(claims["provider"], "demo");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 300, "the default lifetime");
    assert!(iat.abs_diff(portcullis::now_unix()) <= 5);
    assert_eq!(decode(claims["jti"].as_str().unwrap()).len(), 16);

    // Signed once per session: the next request carries the same one.
    let again = assertion_of(&get(&h, &mut b, "/else", &[]).await);
    assert_eq!(again, first);
    // Another session of the same user gets its own.
    let mut other = h.signed_in("ada").await;
    let theirs = assertion_of(&get(&h, &mut other, "/", &[]).await);
    assert_ne!(verify(&theirs, &jwks(&h).await)["jti"], claims["jti"]);
}

#[tokio::test]
async fn a_client_never_gets_its_own_assertion_to_the_upstream() {
    const FORGED: &str = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let spoofs = [
        ("X-Portcullis-Assertion", FORGED),
        ("x_portcullis_assertion", FORGED),
    ];
    let public = "[[rules]]\npath = \"/public/\"\npublic = true\n";
    for on in [true, false] {
        let h = Harness::with(Setup {
            upstream_toml: if on {
                "assertion = true".into()
            } else {
                String::new()
            },
            extra_toml: public.into(),
            ..Setup::default()
        })
        .await;
        let mut b = h.signed_in("grace").await;
        let signed_in = get(&h, &mut b, "/", &spoofs).await;
        let anonymous = get(&h, &mut Browser::new(), "/public/x", &spoofs).await;
        assert!(!signed_in.text().contains(FORGED), "assertion = {on}");
        assert!(!anonymous.text().contains(FORGED), "assertion = {on}");
        assert!(anonymous.upstream_header(HEADER).is_none());
        if on {
            let claims = verify(&assertion_of(&signed_in), &jwks(&h).await);
            assert_eq!(claims["sub"], "grace");
        } else {
            assert!(signed_in.upstream_header(HEADER).is_none());
        }
    }
}

#[tokio::test]
async fn each_route_signs_for_its_own_audience() {
    let (main, b_app, c_app) = (upstream().await, upstream().await, upstream().await);
    let h = Harness::with(Setup {
        upstream: Some(main),
        upstream_toml: "assertion = true\n".into(),
        extra_toml: format!(
            "[[upstreams]]\npath_prefix = \"/b/\"\nurl = \"http://{b_app}/app-b\"\nassertion = true\n\
             [[upstreams]]\npath_prefix = \"/c/\"\nurl = \"http://{c_app}\"\nassertion = true\n\
             assertion_audience = \"https://c.example.com\"\nassertion_lifetime = \"1m\"\n\
             [[upstreams]]\npath_prefix = \"/d/\"\nurl = \"http://{c_app}\"\n"
        ),
        ..Setup::default()
    })
    .await;
    let keys = jwks(&h).await;
    assert_eq!(
        kids(&keys).len(),
        1,
        "one derived key for every route: {keys}"
    );
    let mut b = h.signed_in("grace").await;
    for (path, aud, lifetime) in [
        ("/x", format!("http://{main}"), 300),
        ("/b/x", format!("http://{b_app}/app-b"), 300),
        ("/c/x", "https://c.example.com".to_owned(), 60),
    ] {
        let claims = verify(&assertion_of(&get(&h, &mut b, path, &[]).await), &keys);
        assert_eq!(claims["aud"], aud.as_str(), "{path}");
        let lived = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert_eq!(lived, lifetime, "{path}");
    }
    // A route without `assertion` gets none.
    assert!(
        get(&h, &mut b, "/d/x", &[])
            .await
            .upstream_header(HEADER)
            .is_none()
    );
}

#[tokio::test]
async fn a_bearer_token_request_gets_an_assertion_too() {
    let h = Harness::with(Setup {
        upstream_toml: "assertion = true\n".into(),
        extra_toml: "[access]\nbearer_tokens = true\n".into(),
        ..Setup::default()
    })
    .await;
    let claims = h.idp.access_token_claims("ada");
    let token = h.idp.sign_access_token(&claims, JwtSigning::Current).await;
    let auth = format!("Bearer {token}");
    let mut b = Browser::new();
    let first = assertion_of(&get(&h, &mut b, "/api", &[("authorization", &auth)]).await);
    let claims = verify(&first, &jwks(&h).await);
    assert_eq!(claims["sub"], "ada");
    // The token's principal is cached, and its assertion with it.
    let again = assertion_of(&get(&h, &mut b, "/api", &[("authorization", &auth)]).await);
    assert_eq!(again, first);
}

#[tokio::test]
async fn forward_auth_answers_with_the_assertion() {
    let h = harness(upstream().await, "").await;
    let mut b = h.signed_in("grace").await;
    let resp = b
        .request(
            Method::GET,
            &h.url("/oauth2/auth"),
            &[("accept", "application/json")],
            Default::default(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{}", resp.text());
    let claims = verify(resp.header(HEADER).expect("an assertion"), &jwks(&h).await);
    assert_eq!(claims["sub"], "grace");
}

#[tokio::test]
async fn jwks_is_404_without_assertions_and_takes_only_get_and_head() {
    let h = Harness::start().await;
    let resp = Browser::new().get_json(&h.url("/oauth2/jwks.json")).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert!(
        resp.text()
            .contains("No route sends a signed identity assertion"),
        "{}",
        resp.text()
    );

    let h = harness(upstream().await, "").await;
    let head = Browser::new()
        .request(
            Method::HEAD,
            &h.url("/oauth2/jwks.json"),
            &[],
            Default::default(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-type"), Some("application/json"));
    let post = Browser::new()
        .request(
            Method::POST,
            &h.url("/oauth2/jwks.json"),
            &[],
            Default::default(),
        )
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn replicas_with_one_secret_share_the_key_and_previous_secrets_keys_are_published() {
    let old = "an-older-secret-0123456789abcdef-0123456789";
    let h = Harness::with(Setup {
        upstream_toml: "assertion = true\n".into(),
        session_toml: format!("previous_secrets = [{old:?}]"),
        ..Setup::default()
    })
    .await;
    let keys = jwks(&h).await;
    assert_eq!(
        kids(&keys).len(),
        2,
        "the secret's key and the previous one's: {keys}"
    );
    let replica = h.replica().await;
    let mut b = h.signed_in("grace").await;
    let resp = b
        .request(
            Method::GET,
            &replica.url("/"),
            &[("accept", "application/json")],
            Default::default(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    // Signed by the replica, verified with the first one's keys.
    assert_eq!(verify(&assertion_of(&resp), &keys)["sub"], "grace");

    // After a rotation the old secret's key is still published.
    let rotated = Harness::with(Setup {
        upstream_toml: "assertion = true\n".into(),
        session_toml: format!(
            "secret = \"{old}-rotated\"\nprevious_secrets = [{:?}]",
            crate::support::SECRET
        ),
        ..Setup::default()
    })
    .await;
    let after = jwks(&rotated).await;
    assert!(
        kids(&after).contains(&kids(&keys)[0]),
        "{after} has {keys}'s first key"
    );
}

/// A fresh P-256 key as PEM (PKCS#8), written to a file of its own.
fn key_file(name: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let dir = std::env::temp_dir().join(format!("portcullis-assertion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, key.serialize_pem()).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn a_key_file_alone_is_published_and_a_reload_reads_it_again() {
    let (first, second) = (key_file("first.pem"), key_file("second.pem"));
    let h = harness(
        upstream().await,
        &format!("assertion_key_file = {first:?}\n"),
    )
    .await;
    let before = jwks(&h).await;
    assert_eq!(kids(&before).len(), 1, "only the file's key: {before}");
    let mut b = h.signed_in("grace").await;
    let signed = assertion_of(&get(&h, &mut b, "/", &[]).await);
    verify(&signed, &before);

    h.reload(&[(&first, &second)]).await.unwrap();
    let after = jwks(&h).await;
    assert_eq!(kids(&after).len(), 1, "{after}");
    assert_ne!(kids(&after), kids(&before));
    // The session's cached assertion went with the old key.
    let resigned = assertion_of(&get(&h, &mut b, "/", &[]).await);
    assert_ne!(resigned, signed);
    assert_eq!(verify(&resigned, &after)["sub"], "grace");
}

/// Runs `program` on `script` from `dir` with `PORTCULLIS_URL`,
/// `APP_AUDIENCE` and `ASSERTION` set (the examples' inputs): did it succeed,
/// and what it printed. tokio's Command: the script fetches the JWKS from
/// this runtime.
async fn run_example(
    dir: &Path,
    program: &[&str],
    script: &str,
    h: &Harness,
    audience: &str,
    assertion: &str,
) -> (bool, String) {
    let out = tokio::process::Command::new(program[0])
        .current_dir(dir)
        .args(&program[1..])
        .arg(script)
        .env("PORTCULLIS_URL", &h.base)
        .env("APP_AUDIENCE", audience)
        .env("ASSERTION", assertion)
        .output()
        .await
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        stdout + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Checks an example verifier: it accepts a live assertion for its audience
/// and prints its claims, and refuses it for another audience.
async fn check_example(dir: &Path, program: &[&str], script: &str) {
    let app = upstream().await;
    let h = harness(app, "").await;
    let mut b = h.signed_in("grace").await;
    let assertion = assertion_of(&get(&h, &mut b, "/", &[]).await);
    let audience = format!("http://{app}");
    let (ok, printed) = run_example(dir, program, script, &h, &audience, &assertion).await;
    assert!(ok, "{printed}");
    let claims: Value = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(claims["sub"], "grace");
    let (ok, printed) =
        run_example(dir, program, script, &h, "https://another.app", &assertion).await;
    assert!(!ok, "another audience is refused: {printed}");
}

/// The README's Node snippet (examples/verify-assertion.mjs). Needs node and
/// `npm ci --prefix e2e` (jose); `.ci/run` sets REQUIRE_BROWSER_TEST=1, so
/// that there a missing piece fails.
#[tokio::test]
async fn the_readme_node_snippet_verifies_an_assertion() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let node = Command::new("node").arg("--version").output().is_ok();
    if !(node && root.join("e2e/node_modules/jose").exists()) {
        assert!(
            std::env::var_os("REQUIRE_BROWSER_TEST").is_none(),
            "node and e2e/node_modules/jose are required (npm ci --prefix e2e)"
        );
        eprintln!("skipped the Node assertion check: needs node and npm ci --prefix e2e");
        return;
    }
    let script = std::fs::read_to_string(root.join("examples/verify-assertion.mjs")).unwrap();
    // Evaluated from e2e/, so that `import "jose"` finds e2e/node_modules.
    let node = ["node", "--input-type=module", "--eval"];
    check_example(&root.join("e2e"), &node, &script).await;
}

/// The README's Python snippet (examples/verify-assertion.py), when PyJWT is
/// installed; never required.
#[tokio::test]
async fn the_readme_python_snippet_verifies_an_assertion() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pyjwt = Command::new("python3")
        .args(["-c", "import jwt"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !pyjwt {
        eprintln!("skipped the Python assertion check: needs python3 with PyJWT");
        return;
    }
    let script = root.join("examples/verify-assertion.py");
    check_example(root, &["python3"], &script.display().to_string()).await;
}
