//! The provider over real sockets: authorize, login page, token, userinfo, discovery and JWKS.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use super::{
    ClaimPlace, DEFAULT_TENANT_ID, DemoIdp, ExtraClaim, IdpOptions, Layout, Misbehaviour,
    ResponseIss,
};
use crate::provider::http::ProviderHttp;

async fn call(request: http::Request<Vec<u8>>) -> (StatusCode, HeaderMap, String) {
    let response = ProviderHttp::new(None)
        .unwrap()
        .send(request)
        .await
        .unwrap();
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
    authorize_at(&idp.issuer().join("/authorize").unwrap(), verifier, extra)
}

fn authorize_at(endpoint: &Url, verifier: &str, extra: &[(&str, &str)]) -> String {
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let mut url = endpoint.clone();
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

/// Signs `sub` in through `authorize` and redeems the code at `token` with Basic auth;
/// returns the callback's query and the token response.
async fn code_flow(
    authorize: &Url,
    token: &Url,
    sub: &str,
) -> (HashMap<String, String>, StatusCode, Value) {
    let (status, headers, body) =
        get(&authorize_at(authorize, "verifier", &[("login_hint", sub)])).await;
    assert_eq!(status, StatusCode::FOUND, "{body}");
    let location = Url::parse(headers[LOCATION].to_str().unwrap()).unwrap();
    let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", query["code"].as_str()),
        ("redirect_uri", "http://app.test/cb"),
        ("code_verifier", "verifier"),
    ];
    let (status, _, body) =
        post_form(token.as_str(), &form, Some("portcullis-demo:demo-secret")).await;
    (query, status, serde_json::from_str(&body).unwrap())
}

fn id_token_claims(tokens: &Value) -> Value {
    let jwt = tokens["id_token"].as_str().unwrap();
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn userinfo_of(url: &str, tokens: &Value) -> Value {
    let request = Request::get(url)
        .header(
            AUTHORIZATION,
            format!("Bearer {}", tokens["access_token"].as_str().unwrap()),
        )
        .body(Vec::new())
        .unwrap();
    serde_json::from_str(&call(request).await.2).unwrap()
}

fn microsoft() -> IdpOptions {
    IdpOptions {
        layout: Layout::MicrosoftTenants,
        response_iss: ResponseIss::Omitted,
        extra_claims: vec![ExtraClaim::new("grace", "tid", "tenant-b".into())],
        ..IdpOptions::default()
    }
}

#[tokio::test]
async fn microsoft_common_publishes_the_tenantid_template_and_tokens_name_the_users_tenant() {
    let idp = DemoIdp::start(microsoft()).await.unwrap();
    let base = format!("http://{}", idp.addr());
    let (status, _, body) = get(&format!(
        "{base}/common/v2.0/.well-known/openid-configuration"
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    let metadata: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(metadata["issuer"], format!("{base}/{{tenantid}}/v2.0"));
    assert_eq!(
        metadata["authorization_endpoint"],
        format!("{base}/common/oauth2/v2.0/authorize")
    );
    assert!(metadata.get("code_challenge_methods_supported").is_none());
    assert!(
        metadata
            .get("authorization_response_iss_parameter_supported")
            .is_none()
    );
    let (_, _, body) = get(&format!(
        "{base}/tenant-b/v2.0/.well-known/openid-configuration"
    ))
    .await;
    let specific: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(specific["issuer"], format!("{base}/tenant-b/v2.0"));

    let authorize = Url::parse(metadata["authorization_endpoint"].as_str().unwrap()).unwrap();
    let token = Url::parse(metadata["token_endpoint"].as_str().unwrap()).unwrap();
    let (query, status, tokens) = code_flow(&authorize, &token, "grace").await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(!query.contains_key("iss"), "Microsoft sends no iss");
    let claims = id_token_claims(&tokens);
    assert_eq!(claims["iss"], format!("{base}/tenant-b/v2.0"));
    assert_eq!(claims["tid"], "tenant-b");
    let (_, _, tokens) = code_flow(&authorize, &token, "ada").await;
    let claims = id_token_claims(&tokens);
    assert_eq!(claims["iss"], format!("{base}/{DEFAULT_TENANT_ID}/v2.0"));
    assert_eq!(claims["tid"], DEFAULT_TENANT_ID);
    let keys = get(metadata["jwks_uri"].as_str().unwrap()).await;
    assert_eq!(keys.0, StatusCode::OK);
    let info = userinfo_of(metadata["userinfo_endpoint"].as_str().unwrap(), &tokens).await;
    assert_eq!(info["sub"], "ada");
}

#[tokio::test]
async fn microsoft_pkce_is_still_required_and_misbehaviours_bend_the_tenant() {
    let idp = DemoIdp::start(microsoft()).await.unwrap();
    let base = format!("http://{}", idp.addr());
    let authorize = Url::parse(&format!("{base}/common/oauth2/v2.0/authorize")).unwrap();
    let token = Url::parse(&format!("{base}/common/oauth2/v2.0/token")).unwrap();
    let without_pkce =
        authorize_at(&authorize, "v", &[("login_hint", "ada")]).replace("code_challenge=", "x=");
    assert_eq!(get(&without_pkce).await.0, StatusCode::BAD_REQUEST);

    idp.misbehave(Misbehaviour::TenantMismatch);
    let (_, _, tokens) = code_flow(&authorize, &token, "grace").await;
    let claims = id_token_claims(&tokens);
    assert_eq!(claims["tid"], "tenant-b");
    assert_ne!(claims["iss"], format!("{base}/tenant-b/v2.0"));
    idp.misbehave(Misbehaviour::MissingTenant);
    let (_, _, tokens) = code_flow(&authorize, &token, "grace").await;
    assert!(id_token_claims(&tokens).get("tid").is_none());
}

#[tokio::test]
async fn extra_claims_go_where_they_are_placed_and_null_removes_a_standard_claim() {
    let idp = DemoIdp::start(IdpOptions {
        extra_claims: vec![
            ExtraClaim::new("ada", "hd", "example.com".into()),
            ExtraClaim::new("ada", "groups", Value::Null).only_in(ClaimPlace::IdToken),
            ExtraClaim::new("ada", "groups_direct", serde_json::json!(["acme"]))
                .only_in(ClaimPlace::IdToken),
            ExtraClaim::new("ada", "nickname", "ada-l".into()).only_in(ClaimPlace::Userinfo),
            ExtraClaim::new("grace", "hd", "other.example".into()),
        ],
        response_iss: ResponseIss::Unadvertised,
        ..IdpOptions::default()
    })
    .await
    .unwrap();
    let authorize = idp.issuer().join("/authorize").unwrap();
    let token = idp.issuer().join("/token").unwrap();
    let (query, _, tokens) = code_flow(&authorize, &token, "ada").await;
    assert_eq!(query["iss"], idp.issuer().as_str().trim_end_matches('/'));
    let claims = id_token_claims(&tokens);
    assert_eq!(claims["hd"], "example.com");
    assert!(claims.get("groups").is_none());
    assert_eq!(claims["groups_direct"], serde_json::json!(["acme"]));
    assert!(claims.get("nickname").is_none());
    let info = userinfo_of(idp.issuer().join("/userinfo").unwrap().as_str(), &tokens).await;
    assert_eq!(info["hd"], "example.com");
    assert_eq!(info["groups"], serde_json::json!(["admins", "engineering"]));
    assert_eq!(info["nickname"], "ada-l");
    assert!(info.get("groups_direct").is_none());

    let (_, _, body) = get(idp
        .issuer()
        .join("/.well-known/openid-configuration")
        .unwrap()
        .as_str())
    .await;
    let metadata: Value = serde_json::from_str(&body).unwrap();
    assert!(
        metadata
            .get("authorization_response_iss_parameter_supported")
            .is_none()
    );
}

#[tokio::test]
async fn an_issuer_under_a_path_and_only_client_secret_post_like_linkedin() {
    let idp = DemoIdp::start(IdpOptions {
        layout: Layout::UnderPath("/oauth".into()),
        token_auth_methods: vec!["client_secret_post".into()],
        ..IdpOptions::default()
    })
    .await
    .unwrap();
    let issuer = format!("http://{}/oauth", idp.addr());
    assert_eq!(idp.issuer().as_str(), issuer);
    let (status, _, body) = get(&format!("{issuer}/.well-known/openid-configuration")).await;
    assert_eq!(status, StatusCode::OK);
    let metadata: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(metadata["issuer"], issuer);
    assert_eq!(metadata["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_post"])
    );
    let authorize = Url::parse(&format!("{issuer}/authorize")).unwrap();
    let token = Url::parse(&format!("{issuer}/token")).unwrap();
    let (query, status, body) = code_flow(&authorize, &token, "ada").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "Basic is refused: {body}");
    assert_eq!(query["iss"], issuer);

    let (status, headers, _) = get(&authorize_at(
        &authorize,
        "verifier",
        &[("login_hint", "ada")],
    ))
    .await;
    assert_eq!(status, StatusCode::FOUND);
    let location = Url::parse(headers[LOCATION].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://app.test/cb"),
        ("code_verifier", "verifier"),
        ("client_id", "portcullis-demo"),
        ("client_secret", "demo-secret"),
    ];
    let (status, _, body) = post_form(token.as_str(), &form, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(idp.token_requests().last().unwrap().client_auth, "post");
    assert_eq!(
        get(&format!("http://{}/token", idp.addr())).await.0,
        StatusCode::NOT_FOUND
    );
}

/// Signs `sub` in at the plain layout; the token response.
async fn signed_in(idp: &DemoIdp, sub: &str) -> Value {
    let authorize = idp.issuer().join("/authorize").unwrap();
    let token = idp.issuer().join("/token").unwrap();
    let (_, status, tokens) = code_flow(&authorize, &token, sub).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens
}

async fn refresh(idp: &DemoIdp, refresh_token: &str) -> (StatusCode, Value) {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    let (status, _, body) = post_form(
        idp.issuer().join("/token").unwrap().as_str(),
        &form,
        Some("portcullis-demo:demo-secret"),
    )
    .await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn refresh_keeps_the_sid_drops_the_nonce_and_rotates_when_asked() {
    let idp = DemoIdp::start(IdpOptions {
        access_token_lifetime: 2,
        rotate_refresh_tokens: true,
        ..IdpOptions::default()
    })
    .await
    .unwrap();
    let tokens = signed_in(&idp, "ada").await;
    assert_eq!(tokens["expires_in"], 2);
    let first = id_token_claims(&tokens);
    let sid = idp.sid_of("ada").unwrap();
    assert_eq!(first["sid"], sid.as_str());
    assert_eq!(idp.last_sid().as_deref(), Some(sid.as_str()));
    assert!(first.get("nonce").is_some());

    let old = tokens["refresh_token"].as_str().unwrap();
    let (status, refreshed) = refresh(&idp, old).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let claims = id_token_claims(&refreshed);
    assert_eq!(claims["sid"], sid.as_str());
    assert!(claims.get("nonce").is_none(), "{claims}");
    let new = refreshed["refresh_token"].as_str().unwrap();
    assert_ne!(new, old);
    let (status, refused) = refresh(&idp, old).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["error"], "invalid_grant");
    assert_eq!(refresh(&idp, new).await.0, StatusCode::OK);
    assert_eq!(idp.refresh_count(), 3);
    let grants: Vec<_> = idp
        .token_requests()
        .into_iter()
        .map(|r| r.grant_type)
        .collect();
    assert_eq!(
        grants,
        [
            "authorization_code",
            "refresh_token",
            "refresh_token",
            "refresh_token"
        ]
    );
}

#[tokio::test]
async fn without_rotation_a_refresh_answers_no_refresh_token_and_the_old_one_keeps_working() {
    let idp = DemoIdp::start(IdpOptions {
        id_token_on_refresh: false,
        ..IdpOptions::default()
    })
    .await
    .unwrap();
    let tokens = signed_in(&idp, "grace").await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    for _ in 0..2 {
        let (status, refreshed) = refresh(&idp, rt).await;
        assert_eq!(status, StatusCode::OK);
        assert!(refreshed.get("refresh_token").is_none());
        assert!(refreshed.get("id_token").is_none());
        assert_eq!(refreshed["expires_in"], 3600);
    }
}

#[tokio::test]
async fn disabled_users_and_an_unavailable_token_endpoint() {
    let idp = DemoIdp::start(IdpOptions::default()).await.unwrap();
    let tokens = signed_in(&idp, "ada").await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    idp.misbehave(Misbehaviour::TokenEndpointUnavailable);
    assert_eq!(refresh(&idp, rt).await.0, StatusCode::SERVICE_UNAVAILABLE);
    idp.misbehave(Misbehaviour::Nothing);
    assert_eq!(refresh(&idp, rt).await.0, StatusCode::OK);
    idp.revoke_user_grants("ada");
    let (status, body) = refresh(&idp, rt).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn revocation_needs_the_client_and_a_revoked_refresh_token_is_refused() {
    let idp = DemoIdp::start(IdpOptions::default()).await.unwrap();
    let tokens = signed_in(&idp, "ada").await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let revoke = idp.issuer().join("/revoke").unwrap();
    let form = [("token", rt), ("token_type_hint", "refresh_token")];
    let (status, _, _) = post_form(revoke.as_str(), &form, Some("portcullis-demo:wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&idp, rt).await.0, StatusCode::OK, "not revoked");
    let (status, _, _) =
        post_form(revoke.as_str(), &form, Some("portcullis-demo:demo-secret")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(idp.revoked(), [rt]);
    let seen = idp.revocation_requests();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].known && seen[1].client_ok && seen[1].client_auth == "basic");
    assert_eq!(seen[1].token_type_hint.as_deref(), Some("refresh_token"));
    assert_eq!(refresh(&idp, rt).await.1["error"], "invalid_grant");
}

#[tokio::test]
async fn end_session_checks_the_hint_and_the_return_uri_and_ends_the_idp_session() {
    let idp = DemoIdp::start(IdpOptions {
        post_logout_redirect_uris: vec!["http://app.test/oauth2/signed_out".into()],
        ..IdpOptions::default()
    })
    .await
    .unwrap();
    let (_, _, body) = get(idp
        .issuer()
        .join("/.well-known/openid-configuration")
        .unwrap()
        .as_str())
    .await;
    let metadata: Value = serde_json::from_str(&body).unwrap();
    let issuer = idp.issuer().as_str().trim_end_matches('/').to_owned();
    assert_eq!(
        metadata["end_session_endpoint"],
        format!("{issuer}/end_session")
    );
    assert_eq!(metadata["revocation_endpoint"], format!("{issuer}/revoke"));
    assert_eq!(metadata["backchannel_logout_supported"], true);
    assert_eq!(metadata["backchannel_logout_session_supported"], true);

    let tokens = signed_in(&idp, "ada").await;
    let sid = idp.sid_of("ada").unwrap();
    assert!(idp.has_session(&sid));
    let hint = tokens["id_token"].as_str().unwrap();
    let url = |hint: &str, uri: &str| {
        let mut url = Url::parse(&format!("{issuer}/end_session")).unwrap();
        url.query_pairs_mut()
            .append_pair("id_token_hint", hint)
            .append_pair("client_id", "portcullis-demo")
            .append_pair("post_logout_redirect_uri", uri)
            .append_pair("state", "s t");
        url.to_string()
    };
    let registered = "http://app.test/oauth2/signed_out";
    let tampered = format!("{}x", &hint[..hint.len() - 1]);
    assert_eq!(
        get(&url(&tampered, registered)).await.0,
        StatusCode::BAD_REQUEST
    );
    let other = "http://127.0.0.1/oauth2/signed_out";
    assert_eq!(get(&url(hint, other)).await.0, StatusCode::BAD_REQUEST);
    assert!(idp.has_session(&sid));
    let (status, headers, _) = get(&url(hint, registered)).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(
        headers[LOCATION],
        "http://app.test/oauth2/signed_out?state=s+t"
    );
    assert!(!idp.has_session(&sid));
    let calls = idp.end_session_calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(
        calls.iter().map(|c| c.accepted).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert_eq!(calls[2].hint_sub.as_deref(), Some("ada"));
    assert_eq!(calls[2].hint_sid.as_deref(), Some(sid.as_str()));
    assert_eq!(calls[2].state.as_deref(), Some("s t"));
}

#[tokio::test]
async fn logout_tokens_are_typed_signed_jwts_with_the_backchannel_event() {
    let idp = DemoIdp::start(IdpOptions::default()).await.unwrap();
    let token = idp.logout_token(Some("ada"), Some("sid-1")).await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "ada");
    assert_eq!(claims["sid"], "sid-1");
    assert_eq!(claims["aud"], "portcullis-demo");
    assert!(claims["jti"].is_string() && claims.get("nonce").is_none());
    assert!(claims["events"][super::BACKCHANNEL_LOGOUT_EVENT].is_object());
    let again = idp.logout_token(Some("ada"), Some("sid-1")).await;
    assert_ne!(token, again, "a fresh jti each time");
}
