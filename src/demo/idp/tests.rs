//! The provider over real sockets: authorize, login page, token, userinfo, discovery and JWKS.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use super::{DemoIdp, IdpOptions};
use crate::provider::http::ProviderHttp;

async fn call(request: http::Request<Vec<u8>>) -> (StatusCode, HeaderMap, String) {
    let response = ProviderHttp::new().unwrap().send(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn get(url: &str) -> (StatusCode, HeaderMap, String) {
    call(Request::get(url).body(Vec::new()).unwrap()).await
}

async fn post_form(
    url: &str,
    form: &[(&str, &str)],
    basic: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = Request::post(url).header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(credentials) = basic {
        request = request.header(
            AUTHORIZATION,
            format!("Basic {}", STANDARD.encode(credentials)),
        );
    }
    call(request.body(body.into_bytes()).unwrap()).await
}

fn authorize_url(idp: &DemoIdp, verifier: &str, extra: &[(&str, &str)]) -> String {
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let mut url = idp.issuer().join("/authorize").unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", "portcullis-demo")
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", "http://app.test/cb")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "st<1>")
        .append_pair("nonce", "n1")
        .extend_pairs(extra);
    url.to_string()
}

fn code_from(headers: &HeaderMap) -> String {
    let location = Url::parse(headers[LOCATION].to_str().unwrap()).unwrap();
    assert_eq!(location.path(), "/cb");
    let query: HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["state"], "st<1>");
    query["code"].clone()
}

#[tokio::test]
async fn authorize_requires_pkce_s256_state_nonce_and_the_known_client() {
    let idp = DemoIdp::start(IdpOptions::default()).await.unwrap();
    let good = authorize_url(&idp, "v", &[("login_hint", "ada")]);
    assert_eq!(get(&good).await.0, StatusCode::FOUND);
    for drop in [
        "code_challenge",
        "state",
        "nonce",
        "redirect_uri",
        "client_id",
    ] {
        let mut url = Url::parse(&good).unwrap();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .filter(|(k, _)| k != drop)
            .collect();
        url.query_pairs_mut().clear().extend_pairs(kept);
        assert_eq!(
            get(url.as_str()).await.0,
            StatusCode::BAD_REQUEST,
            "without {drop}"
        );
    }
    let plain = good.replace("code_challenge_method=S256", "code_challenge_method=plain");
    assert_eq!(get(&plain).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn login_page_lists_users_escaped_and_posting_one_returns_a_code() {
    let mut opts = IdpOptions::default();
    opts.users[0].name = "<script>x</script>".into();
    let idp = DemoIdp::start(opts).await.unwrap();
    let (status, _, page) = get(&authorize_url(&idp, "v", &[])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"));
    let start = page.find("name=\"request\" value=\"").unwrap() + 22;
    let request_id = &page[start..start + page[start..].find('"').unwrap()];
    let login = idp.issuer().join("/login").unwrap();
    let (status, headers, _) = post_form(
        login.as_str(),
        &[("request", request_id), ("sub", "grace")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    code_from(&headers);
    let (status, _, _) = post_form(
        login.as_str(),
        &[("request", request_id), ("sub", "grace")],
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a pending request is single-use"
    );
}

#[tokio::test]
async fn token_endpoint_checks_the_secret_and_refresh_tokens_work() {
    let idp = DemoIdp::start(IdpOptions::default()).await.unwrap();
    let token_url = idp.issuer().join("/token").unwrap();
    let (_, headers, _) = get(&authorize_url(&idp, "verifier", &[("login_hint", "ada")])).await;
    let code = code_from(&headers);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://app.test/cb"),
        ("code_verifier", "verifier"),
    ];
    let (status, _, body) =
        post_form(token_url.as_str(), &form, Some("portcullis-demo:wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("invalid_client"));
    let (status, _, body) = post_form(
        token_url.as_str(),
        &form,
        Some("portcullis-demo:demo-secret"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tokens: Value = serde_json::from_str(&body).unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let refresh_form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    let (status, _, body) = post_form(
        token_url.as_str(),
        &refresh_form,
        Some("portcullis-demo:demo-secret"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refreshed: Value = serde_json::from_str(&body).unwrap();
    assert_ne!(refreshed["access_token"], tokens["access_token"]);
    assert!(refreshed["id_token"].is_string());
}

#[tokio::test]
async fn userinfo_needs_a_valid_bearer_token() {
    let idp = DemoIdp::start(IdpOptions::default()).await.unwrap();
    let request = Request::get(idp.issuer().join("/userinfo").unwrap().as_str())
        .header(AUTHORIZATION, "Bearer nope")
        .body(Vec::new())
        .unwrap();
    let (status, headers, _) = call(request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key(WWW_AUTHENTICATE));
}

#[tokio::test]
async fn discovery_publishes_the_exact_issuer_and_jwks_only_the_current_key() {
    let idp = DemoIdp::start(IdpOptions::default()).await.unwrap();
    let issuer = format!("http://{}", idp.addr());
    let (_, _, body) = get(&format!("{issuer}/.well-known/openid-configuration")).await;
    let metadata: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(metadata["issuer"], issuer);
    let kid = |body: &str| serde_json::from_str::<Value>(body).unwrap()["keys"][0]["kid"].clone();
    let before = kid(&get(&format!("{issuer}/jwks")).await.2);
    idp.rotate_key();
    let (_, _, after) = get(&format!("{issuer}/jwks")).await;
    assert_ne!(kid(&after), before);
    assert_eq!(
        serde_json::from_str::<Value>(&after).unwrap()["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(idp.jwks_fetches(), 2);
}
