//! Issue #13 item 2: `Authorization: Bearer` tokens in place of a session,
//! JWTs verified against the provider's keys and opaque tokens introspected.

use bytes::Bytes;
use http::{Method, StatusCode};
use portcullis::demo::idp::{JwtSigning, Misbehaviour};
use serde_json::{Value, json};

use crate::support::{Browser, Harness, Resp, Setup};

const BEARER: &str = "[access]\nbearer_tokens = true\n";

async fn harness(extra: &str) -> Harness {
    Harness::with(Setup {
        extra_toml: format!("{BEARER}{extra}"),
        ..Setup::default()
    })
    .await
}

/// `GET path` as an API client with `token`, and no cookie.
async fn call(h: &Harness, path: &str, token: &str) -> Resp {
    call_with(h, path, token, "application/json").await
}

async fn call_with(h: &Harness, path: &str, token: &str, accept: &str) -> Resp {
    Browser::new()
        .request(
            Method::GET,
            &h.url(path),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("accept", accept),
            ],
            Bytes::new(),
        )
        .await
}

async fn token(h: &Harness, sub: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut claims = h.idp.access_token_claims(sub);
    change(&mut claims);
    h.idp.sign_access_token(&claims, JwtSigning::Current).await
}

fn assert_invalid_token(resp: &Resp, what: &str) {
    assert_eq!(
        resp.status,
        StatusCode::UNAUTHORIZED,
        "{what}: {}",
        resp.text()
    );
    let challenge = resp.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(r#"error="invalid_token""#),
        "{what}: {challenge}"
    );
    assert_eq!(resp.json()["error"], "invalid_token", "{what}");
    assert!(resp.set_cookies().is_empty(), "{what}");
}

#[tokio::test]
async fn an_accepted_token_reaches_the_upstream_with_identity_headers_and_no_cookie() {
    let h = harness("").await;
    let t = token(&h, "ada", |_| {}).await;
    let resp = call(&h, "/api/x", &t).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(
        resp.upstream_header("x-forwarded-user").as_deref(),
        Some("ada")
    );
    assert_eq!(
        resp.upstream_header("x-forwarded-email").as_deref(),
        Some("ada@example.com")
    );
    assert!(resp.set_cookies().is_empty(), "{:?}", resp.set_cookies());
    // Passed on by default, for apps with their own bearer checks.
    assert_eq!(
        resp.upstream_header("authorization"),
        Some(format!("Bearer {t}"))
    );
    // A repeat is served from the cache: no provider call, same answer.
    let fetches = h.idp.jwks_fetches();
    let again = call(&h, "/api/x", &t).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(h.idp.jwks_fetches(), fetches);
    let metrics = crate::metrics::scrape(&h).await;
    assert!(
        metrics.contains(r#"portcullis_bearer_tokens_total{result="accepted"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_bearer_tokens_on_a_token_is_not_a_principal() {
    let h = Harness::start().await;
    let t = token(&h, "ada", |_| {}).await;
    let resp = call(&h, "/", &t).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(
        !resp
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn a_token_of_another_issuer_is_refused() {
    let h = harness("").await;
    let t = token(&h, "ada", |c| c["iss"] = json!("https://evil.example")).await;
    assert_invalid_token(&call(&h, "/", &t).await, "another issuer");
}

#[tokio::test]
async fn an_issuer_differing_by_a_trailing_slash_is_another_issuer() {
    // `iss` is compared exactly (OpenID Connect Core §3.1.3.7), when choosing
    // the provider and again when verifying.
    let h = harness("").await;
    let t = token(&h, "ada", |c| {
        c["iss"] = json!(format!("{}/", c["iss"].as_str().unwrap()));
    })
    .await;
    assert_invalid_token(&call(&h, "/", &t).await, "iss with a trailing slash");
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_unless_listed_in_extra_audiences() {
    let h = harness("").await;
    let t = token(&h, "ada", |c| c["aud"] = json!("https://api.example")).await;
    assert_invalid_token(&call(&h, "/", &t).await, "another audience");

    let h = Harness::with(Setup {
        extra_toml: BEARER.into(),
        provider_toml: "extra_audiences = [\"https://api.example\"]\n".into(),
        ..Setup::default()
    })
    .await;
    let t = token(&h, "ada", |c| {
        c["aud"] = json!(["x", "https://api.example"])
    })
    .await;
    let resp = call(&h, "/", &t).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let h = harness("").await;
    let now = portcullis::now_unix();
    let expired = token(&h, "ada", |c| {
        c["iat"] = json!(now - 7200);
        c["exp"] = json!(now - 3600);
    })
    .await;
    assert_invalid_token(&call(&h, "/", &expired).await, "expired");
    let early = token(&h, "ada", |c| c["nbf"] = json!(now + 3600)).await;
    assert_invalid_token(&call(&h, "/", &early).await, "nbf in the future");
    let future = token(&h, "ada", |c| c["iat"] = json!(now + 3600)).await;
    assert_invalid_token(&call(&h, "/", &future).await, "iat in the future");
    let no_exp = token(&h, "ada", |c| {
        c.as_object_mut().unwrap().remove("exp");
    })
    .await;
    assert_invalid_token(&call(&h, "/", &no_exp).await, "no exp");
    // Within the leeway: a clock a little behind is not an error.
    let skewed = token(&h, "ada", |c| c["nbf"] = json!(now + 10)).await;
    assert_eq!(call(&h, "/", &skewed).await.status, StatusCode::OK);
}

#[tokio::test]
async fn alg_none_and_hmac_with_the_public_key_are_refused() {
    let h = harness("").await;
    let claims = h.idp.access_token_claims("ada");
    let none = h.idp.sign_access_token(&claims, JwtSigning::AlgNone).await;
    assert_invalid_token(&call(&h, "/", &none).await, "alg none");
    let hs = h
        .idp
        .sign_access_token(&claims, JwtSigning::Hs256WithPublicKey)
        .await;
    assert_invalid_token(&call(&h, "/", &hs).await, "HS256 with the public key");
}

#[tokio::test]
async fn a_sound_signature_in_an_algorithm_the_provider_does_not_advertise_is_refused() {
    let h = harness("").await;
    let claims = h.idp.access_token_claims("ada");
    let rs384 = h.idp.sign_access_token(&claims, JwtSigning::Rs384).await;
    let resp = call(&h, "/", &rs384).await;
    assert_invalid_token(&resp, "RS384 where only RS256 is advertised");
    assert!(
        resp.text()
            .contains("algorithm is not one the provider signs with"),
        "{}",
        resp.text()
    );
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_once_and_follows_a_rotation() {
    let h = harness("").await;
    let fetches = h.idp.jwks_fetches();
    let claims = h.idp.access_token_claims("ada");
    let next = h.idp.sign_access_token(&claims, JwtSigning::NextKey).await;
    assert_invalid_token(&call(&h, "/", &next).await, "unknown kid");
    assert_eq!(h.idp.jwks_fetches(), fetches + 1, "one paced re-fetch");
    // The refusal is remembered: the same token does not fetch again.
    assert_invalid_token(&call(&h, "/", &next).await, "unknown kid again");
    assert_eq!(h.idp.jwks_fetches(), fetches + 1);

    h.idp.rotate_key();
    let rotated = token(&h, "ada", |_| {}).await;
    let resp = call(&h, "/", &rotated).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(h.idp.jwks_fetches(), fetches + 2);
}

#[tokio::test]
async fn a_valid_token_for_a_user_a_rule_refuses_gets_403() {
    let h = harness("[[rules]]\npath = \"/admin/\"\ngroups = [\"admins\"]\n").await;
    let grace = token(&h, "grace", |_| {}).await;
    let resp = call(&h, "/admin/x", &grace).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text());
    let ada = token(&h, "ada", |_| {}).await;
    assert_eq!(call(&h, "/admin/x", &ada).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_invalid_token_from_a_browser_gets_401_not_a_redirect() {
    let h = harness("").await;
    let resp = call_with(&h, "/", "not.a.jwt", "text/html").await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(resp.header("location").is_none());
    assert!(
        resp.header("www-authenticate")
            .unwrap_or_default()
            .contains(r#"error="invalid_token""#)
    );
    // No token at all: a browser is still sent to sign in, an API client
    // gets the plain challenge.
    let mut b = Browser::new();
    assert_eq!(b.get(&h.url("/")).await.status, StatusCode::FOUND);
    let resp = b.get_json(&h.url("/")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(
        resp.header("www-authenticate")
            .unwrap_or_default()
            .starts_with("Bearer")
    );
}

#[tokio::test]
async fn a_public_path_lets_an_invalid_token_through_anonymously() {
    let h = harness("[[rules]]\npath = \"/public/\"\npublic = true\n").await;
    let resp = call(&h, "/public/x", "garbage").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.upstream_header("x-forwarded-user"), None);
}

#[tokio::test]
async fn the_bearer_token_wins_over_a_session_cookie_which_is_left_alone() {
    let h = harness("").await;
    let mut b = h.signed_in("ada").await;
    let grace = token(&h, "grace", |_| {}).await;
    let resp = b
        .request(
            Method::GET,
            &h.url("/"),
            &[
                ("authorization", &format!("Bearer {grace}")),
                ("accept", "application/json"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.upstream_header("x-forwarded-user").as_deref(),
        Some("grace")
    );
    assert!(resp.set_cookies().is_empty());
    let resp = b.get_json(&h.url("/")).await;
    assert_eq!(
        resp.upstream_header("x-forwarded-user").as_deref(),
        Some("ada")
    );
    // A bad token is refused even with a good cookie: the client said who it is.
    let resp = b
        .request(
            Method::GET,
            &h.url("/"),
            &[
                ("authorization", "Bearer nonsense"),
                ("accept", "application/json"),
            ],
            Bytes::new(),
        )
        .await;
    assert_invalid_token(&resp, "bad token with a cookie");
}

#[tokio::test]
async fn pass_authorization_false_strips_the_clients_authorization() {
    let h = Harness::with(Setup {
        extra_toml: BEARER.into(),
        upstream_toml: "pass_authorization = false\n".into(),
        ..Setup::default()
    })
    .await;
    let t = token(&h, "ada", |_| {}).await;
    let resp = call(&h, "/", &t).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.upstream_header("x-forwarded-user").as_deref(),
        Some("ada")
    );
    assert_eq!(resp.upstream_header("authorization"), None);
}

#[tokio::test]
async fn where_portcullis_writes_authorization_a_clients_never_reaches_the_upstream() {
    let h = Harness::with(Setup {
        extra_toml: format!("{BEARER}[[rules]]\npath = \"/public/\"\npublic = true\n"),
        upstream_toml: "pass_id_token = true\n".into(),
        ..Setup::default()
    })
    .await;
    let t = token(&h, "ada", |_| {}).await;
    let resp = call(&h, "/", &t).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.upstream_header("x-forwarded-user").as_deref(),
        Some("ada")
    );
    assert_eq!(resp.upstream_header("authorization"), None);
    let resp = call(&h, "/public/x", "forged-id-token").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.upstream_header("authorization"), None);
    // A signed-in session still gets its id_token there.
    let mut b = h.signed_in("ada").await;
    let resp = b.get_json(&h.url("/")).await;
    assert!(
        resp.upstream_header("authorization")
            .is_some_and(|v| v.starts_with("Bearer ey"))
    );
}

#[tokio::test]
async fn forward_auth_and_userinfo_take_a_bearer_token() {
    let h = harness("").await;
    let t = token(&h, "ada", |_| {}).await;
    let resp = call(&h, "/oauth2/auth", &t).await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert_eq!(resp.header("x-forwarded-user"), Some("ada"));
    assert!(resp.set_cookies().is_empty());
    let resp = call(&h, "/oauth2/userinfo", &t).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.json()["sub"], "ada");
    assert_eq!(resp.json()["provider"], "demo");
    assert_invalid_token(&call(&h, "/oauth2/auth", "nope").await, "forward-auth");
    assert_invalid_token(&call(&h, "/oauth2/userinfo", "nope").await, "userinfo");
}

async fn introspecting() -> Harness {
    Harness::with(Setup {
        extra_toml: format!("{BEARER}introspection_cache = \"60s\"\n"),
        provider_toml: "introspection = true\n".into(),
        ..Setup::default()
    })
    .await
}

#[tokio::test]
async fn an_opaque_token_is_introspected_once_then_served_from_the_cache() {
    let h = introspecting().await;
    let t = h.idp.issue_opaque_token("ada");
    let resp = call(&h, "/", &t).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(
        resp.upstream_header("x-forwarded-user").as_deref(),
        Some("ada")
    );
    assert!(resp.set_cookies().is_empty());
    assert_eq!(h.idp.introspections(), 1);
    assert_eq!(call(&h, "/", &t).await.status, StatusCode::OK);
    assert_eq!(h.idp.introspections(), 1, "served from the cache");
}

#[tokio::test]
async fn an_inactive_opaque_token_is_refused_and_the_refusal_remembered() {
    let h = introspecting().await;
    assert_invalid_token(&call(&h, "/", "not-a-live-token").await, "inactive");
    assert_invalid_token(&call(&h, "/", "not-a-live-token").await, "inactive again");
    assert_eq!(h.idp.introspections(), 1);
}

#[tokio::test]
async fn introspection_down_is_503_not_401() {
    let h = introspecting().await;
    h.idp.misbehave(Misbehaviour::IntrospectionUnavailable);
    let t = h.idp.issue_opaque_token("ada");
    let resp = call(&h, "/", &t).await;
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.text()
    );
    assert_eq!(resp.json()["error"], "token_check_unavailable");
}

#[tokio::test]
async fn an_opaque_token_without_introspection_is_refused() {
    let h = harness("").await;
    let t = h.idp.issue_opaque_token("ada");
    assert_invalid_token(&call(&h, "/", &t).await, "no introspection");
    assert_eq!(h.idp.introspections(), 0);
}

#[tokio::test]
async fn a_presets_restriction_holds_for_its_tokens_too() {
    // Google's hosted_domain: the token's `hd` must be the Workspace domain.
    let h = Harness::with(Setup {
        extra_toml: BEARER.into(),
        providers_toml: Some(
            "[providers.google]\nkind = \"google\"\nissuer = \"{demo_idp}\"\n\
             client_id = \"portcullis-demo\"\nclient_secret = \"demo-secret\"\n\
             hosted_domain = \"example.com\"\n"
                .into(),
        ),
        ..Setup::default()
    })
    .await;
    let inside = token(&h, "ada", |c| c["hd"] = json!("example.com")).await;
    let resp = call(&h, "/", &inside).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(
        resp.upstream_header("x-forwarded-provider").as_deref(),
        Some("google")
    );
    let outside = token(&h, "grace", |c| c["hd"] = json!("other.example")).await;
    assert_invalid_token(&call(&h, "/", &outside).await, "another Workspace");
    let consumer = token(&h, "eve", |_| {}).await;
    assert_invalid_token(&call(&h, "/", &consumer).await, "no hd");
}

#[tokio::test]
async fn concurrent_requests_with_one_new_token_introspect_it_once() {
    let h = introspecting().await;
    let t = h.idp.issue_opaque_token("ada");
    let calls = (0..8).map(|_| call(&h, "/", &t));
    for resp in futures_util::future::join_all(calls).await {
        assert_eq!(resp.status, StatusCode::OK);
    }
    assert_eq!(h.idp.introspections(), 1);
}

#[tokio::test]
async fn pass_authorization_is_per_upstreams_entry() {
    let b = portcullis::demo::upstream::start().await.unwrap().0;
    let h = harness(&format!(
        "[[upstreams]]\npath_prefix = \"/b/\"\nurl = \"http://{b}\"\npass_authorization = false\n"
    ))
    .await;
    let t = token(&h, "ada", |_| {}).await;
    let default = call(&h, "/a", &t).await;
    assert_eq!(default.status, StatusCode::OK);
    assert!(default.upstream_header("authorization").is_some());
    let stripped = call(&h, "/b/x", &t).await;
    assert_eq!(stripped.status, StatusCode::OK);
    assert_eq!(
        stripped.upstream_header("x-forwarded-user").as_deref(),
        Some("ada")
    );
    assert_eq!(stripped.upstream_header("authorization"), None);
}
