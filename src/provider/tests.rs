use std::collections::HashMap;
use std::time::Duration;

use ::http::StatusCode;
use figment::Figment;
use figment::providers::{Format, Toml};
use url::Url;

use super::http::{HttpFailure, ProviderHttp};
use super::*;
use crate::demo::idp::{DemoIdp, IdpOptions, Misbehaviour, TokenRequestSeen};

struct Setup {
    idp: DemoIdp,
    providers: Providers,
    redirect_uri: Url,
}

async fn setup(opts: IdpOptions, provider_extra: &str) -> Setup {
    let secret = match &opts.client_secret {
        Some(s) => format!("client_secret = \"{s}\""),
        None => String::new(),
    };
    let idp = DemoIdp::start(opts.clone()).await.unwrap();
    let toml = format!(
        r#"
        [session]
        secret = "0123456789abcdef0123456789abcdef"
        [providers.demo]
        issuer = "{issuer}"
        client_id = "{client_id}"
        {secret}
        {provider_extra}
        "#,
        issuer = idp.issuer(),
        client_id = opts.client_id,
    );
    let config = crate::config::from_figment(Figment::from(Toml::string(&toml))).unwrap();
    let providers =
        Providers::start(&config, Default::default()).expect("TLS client for providers");
    assert!(
        providers.wait_ready(Duration::from_secs(10)).await,
        "discovery failed"
    );
    Setup {
        idp,
        providers,
        redirect_uri: config.redirect_uri("demo"),
    }
}

/// What the browser brings back from the provider's authorization endpoint.
struct Returned {
    code: String,
    state: String,
    iss: Option<String>,
}

impl Setup {
    fn provider(&self) -> &Provider {
        self.providers.get("demo").unwrap()
    }

    /// Begins a flow and lets the IdP approve `sub` at once, as a browser would. The
    /// `302` also shows that the provider client never follows redirects.
    async fn authorize(&self, sub: &str) -> (Returned, FlowSecrets, Url) {
        let (mut url, secrets) = self.provider().begin(&self.redirect_uri).unwrap();
        url.query_pairs_mut().append_pair("login_hint", sub);
        let http = ProviderHttp::new(None).unwrap();
        let response = http
            .send(::http::Request::get(url.as_str()).body(Vec::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FOUND);
        let location = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        let query: HashMap<_, _> = location.query_pairs().into_owned().collect();
        let returned = Returned {
            code: query["code"].clone(),
            state: query["state"].clone(),
            iss: query.get("iss").cloned(),
        };
        (returned, secrets, url)
    }

    async fn sign_in(&self, sub: &str) -> Result<SignedIn, ProviderError> {
        let (returned, secrets, _) = self.authorize(sub).await;
        assert_eq!(returned.state, secrets.state);
        let callback = Callback {
            code: &returned.code,
            iss: returned.iss.as_deref(),
        };
        self.provider()
            .finish(callback, &secrets, &self.redirect_uri)
            .await
    }
}

fn public_client() -> IdpOptions {
    IdpOptions {
        client_secret: None,
        ..IdpOptions::default()
    }
}

#[tokio::test]
async fn authorization_url_carries_pkce_s256_state_nonce_scopes_and_redirect_uri() {
    let s = setup(IdpOptions::default(), "").await;
    let (url, secrets) = s.provider().begin(&s.redirect_uri).unwrap();
    let query: HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], "portcullis-demo");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["state"], secrets.state);
    assert_eq!(query["nonce"], secrets.nonce);
    assert_eq!(query["redirect_uri"], s.redirect_uri.as_str());
    let scopes: Vec<_> = query["scope"].split(' ').collect();
    assert_eq!(scopes.iter().filter(|s| **s == "openid").count(), 1);
    assert!(scopes.contains(&"email") && scopes.contains(&"profile"));
    assert!(secrets.pkce_verifier.len() >= 43);
    assert_ne!(query["code_challenge"], secrets.pkce_verifier);
}

#[tokio::test]
async fn confidential_client_signs_in_with_basic_auth_and_keeps_every_claim() {
    let s = setup(IdpOptions::default(), "").await;
    let signed_in = s.sign_in("ada").await.unwrap();
    assert_eq!(signed_in.claims["sub"], "ada");
    assert_eq!(signed_in.claims["email"], "ada@example.com");
    assert_eq!(
        signed_in.claims["groups"],
        serde_json::json!(["admins", "engineering"])
    );
    let tokens = &signed_in.tokens;
    assert!(tokens.access_token.is_some() && tokens.refresh_token.is_some());
    assert_eq!(
        tokens.id_token.as_deref().map(|t| t.split('.').count()),
        Some(3)
    );
    let expires_in = tokens.access_expires_at.unwrap() - crate::now_unix();
    assert!((3590..=3600).contains(&expires_in), "{expires_in}");
    let seen = TokenRequestSeen {
        client_auth: "basic",
        had_code_verifier: true,
        pkce_ok: true,
        grant_type: "authorization_code".into(),
    };
    assert_eq!(s.idp.token_requests(), vec![seen]);
}

#[tokio::test]
async fn client_secret_post_sends_the_secret_in_the_body() {
    let s = setup(
        IdpOptions::default(),
        "token_auth_method = \"client_secret_post\"",
    )
    .await;
    s.sign_in("grace").await.unwrap();
    assert_eq!(s.idp.token_requests()[0].client_auth, "post");
}

#[tokio::test]
async fn public_client_signs_in_with_pkce_alone() {
    let s = setup(public_client(), "").await;
    let signed_in = s.sign_in("grace").await.unwrap();
    assert_eq!(signed_in.claims["sub"], "grace");
    let seen = TokenRequestSeen {
        client_auth: "none",
        had_code_verifier: true,
        pkce_ok: true,
        grant_type: "authorization_code".into(),
    };
    assert_eq!(s.idp.token_requests(), vec![seen]);
}

#[tokio::test]
async fn every_bad_id_token_is_refused_for_its_own_reason() {
    let s = setup(IdpOptions::default(), "").await;
    for (m, expected) in [
        (Misbehaviour::WrongIssuer, "issuer"),
        (Misbehaviour::WrongAudience, "audiences"),
        (Misbehaviour::ExtraAudienceWithoutAzp, "no azp"),
        (
            Misbehaviour::ExtraAudienceForAnotherAzp,
            "azp is not our client_id",
        ),
        (Misbehaviour::Expired, "expired"),
        (Misbehaviour::IssuedInFuture, "issued in the future"),
        (Misbehaviour::AlgNone, "signature"),
        (Misbehaviour::AlgHs256WithPublicKey, "HS256"),
        (Misbehaviour::BadSignature, "bad signature"),
        (Misbehaviour::MissingNonce, "missing nonce"),
        (Misbehaviour::WrongNonce, "nonce mismatch"),
    ] {
        s.idp.misbehave(m);
        match s.sign_in("ada").await {
            Err(ProviderError::InvalidIdToken(reason)) => {
                assert!(reason.contains(expected), "{m:?}: {reason}");
                assert!(!reason.contains("eyJ"), "{m:?} leaks a token: {reason}");
            }
            other => panic!("{m:?} was not refused as an invalid id_token: {other:?}"),
        }
    }
    s.idp.misbehave(Misbehaviour::Nothing);
    assert!(s.sign_in("ada").await.is_ok());
}

#[tokio::test]
async fn hmac_with_the_public_key_is_refused_for_a_public_client_too() {
    let s = setup(public_client(), "").await;
    s.idp.misbehave(Misbehaviour::AlgHs256WithPublicKey);
    assert!(matches!(
        s.sign_in("ada").await,
        Err(ProviderError::InvalidIdToken(_))
    ));
}

#[tokio::test]
async fn userinfo_with_another_sub_is_refused() {
    let s = setup(IdpOptions::default(), "fetch_userinfo = true").await;
    s.idp.misbehave(Misbehaviour::UserinfoSubMismatch);
    assert!(matches!(
        s.sign_in("ada").await,
        Err(ProviderError::UserinfoSubMismatch)
    ));
}

#[tokio::test]
async fn userinfo_claims_fill_in_but_never_override_the_subject() {
    let s = setup(IdpOptions::default(), "fetch_userinfo = true").await;
    let signed_in = s.sign_in("eve").await.unwrap();
    assert_eq!(signed_in.claims["sub"], "eve");
    assert_eq!(signed_in.claims["email_verified"], false);
    assert_eq!(
        signed_in.claims["iss"],
        s.idp.issuer().as_str().trim_end_matches('/')
    );
}

#[tokio::test]
async fn token_endpoint_error_is_reported_with_its_oauth_error_code() {
    let s = setup(IdpOptions::default(), "").await;
    s.idp.misbehave(Misbehaviour::TokenEndpointError);
    match s.sign_in("ada").await {
        Err(ProviderError::TokenRejected { error, description }) => {
            assert_eq!(error, "invalid_grant");
            assert!(description.is_some());
        }
        other => panic!("expected TokenRejected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_code_is_single_use() {
    let s = setup(IdpOptions::default(), "").await;
    let (returned, secrets, _) = s.authorize("ada").await;
    let callback = Callback {
        code: &returned.code,
        iss: returned.iss.as_deref(),
    };
    s.provider()
        .finish(callback, &secrets, &s.redirect_uri)
        .await
        .unwrap();
    match s
        .provider()
        .finish(callback, &secrets, &s.redirect_uri)
        .await
    {
        Err(ProviderError::TokenRejected { error, .. }) => assert_eq!(error, "invalid_grant"),
        other => panic!("a reused code was accepted: {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_pkce_verifier_is_refused_by_the_provider() {
    let s = setup(IdpOptions::default(), "").await;
    let (returned, mut secrets, _) = s.authorize("ada").await;
    secrets.pkce_verifier = "x".repeat(43);
    let callback = Callback {
        code: &returned.code,
        iss: returned.iss.as_deref(),
    };
    match s
        .provider()
        .finish(callback, &secrets, &s.redirect_uri)
        .await
    {
        Err(ProviderError::TokenRejected { error, .. }) => assert_eq!(error, "invalid_grant"),
        other => panic!("a wrong verifier was accepted: {other:?}"),
    }
    assert!(!s.idp.token_requests()[0].pkce_ok);
}

#[tokio::test]
async fn response_iss_must_name_the_provider_and_is_required_when_advertised() {
    let s = setup(IdpOptions::default(), "").await;
    let (returned, secrets, _) = s.authorize("ada").await;
    for iss in [Some("https://evil.example"), None] {
        let callback = Callback {
            code: &returned.code,
            iss,
        };
        let result = s
            .provider()
            .finish(callback, &secrets, &s.redirect_uri)
            .await;
        assert!(
            matches!(result, Err(ProviderError::IssuerMismatch)),
            "{iss:?}: {result:?}"
        );
    }
    assert!(
        s.idp.token_requests().is_empty(),
        "the code must not be exchanged"
    );
}

/// Moves Tokio's clock `by` forward at once, firing the timers that fall due.
async fn skip(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

#[tokio::test]
async fn rotated_key_is_picked_up_by_one_jwks_refetch() {
    let s = setup(IdpOptions::default(), "").await;
    assert_eq!(s.idp.jwks_fetches(), 1);
    skip(JWKS_REFETCH_INTERVAL).await;
    s.idp.rotate_key();
    // Several sign-ins at once with the new kid share the one re-fetch.
    let results = futures_util::future::join_all((0..4).map(|_| s.sign_in("ada"))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(s.idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn unknown_kid_refetches_are_paced_and_a_rotation_during_the_pause_waits() {
    let s = setup(IdpOptions::default(), "").await;
    skip(JWKS_REFETCH_INTERVAL).await;
    s.idp.misbehave(Misbehaviour::UnknownKid);
    assert!(matches!(
        s.sign_in("ada").await,
        Err(ProviderError::InvalidIdToken(_))
    ));
    assert_eq!(s.idp.jwks_fetches(), 2, "discovery, then one re-fetch");
    // The provider now rotates to the key it signed with, right after that re-fetch.
    s.idp.rotate_key();
    s.idp.misbehave(Misbehaviour::Nothing);
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(s.idp.jwks_fetches(), 2, "no re-fetch within the interval");
        skip(JWKS_REFETCH_INTERVAL).await;
    };
    let (signed_in, ()) = tokio::join!(s.sign_in("ada"), meanwhile);
    assert!(signed_in.is_ok(), "{signed_in:?}");
    assert_eq!(s.idp.jwks_fetches(), 3);
}

#[tokio::test]
async fn unreachable_provider_is_not_ready_and_begin_says_so() {
    // A port that was just free: nothing listens there.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = format!(
        r#"
        [session]
        secret = "0123456789abcdef0123456789abcdef"
        [providers.down]
        issuer = "http://127.0.0.1:{port}"
        client_id = "x"
        "#
    );
    let config = crate::config::from_figment(Figment::from(Toml::string(&toml))).unwrap();
    let providers =
        Providers::start(&config, Default::default()).expect("TLS client for providers");
    assert!(!providers.wait_ready(Duration::from_millis(300)).await);
    assert!(!providers.all_ready());
    let provider = providers.get("down").unwrap();
    let redirect = config.redirect_uri("down");
    assert!(matches!(
        provider.begin(&redirect),
        Err(ProviderError::NotReady { .. })
    ));
    assert_eq!(
        providers
            .iter()
            .map(Provider::display_name)
            .collect::<Vec<_>>(),
        ["down"]
    );
}

#[tokio::test]
async fn http_client_reports_a_refused_connection() {
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/userinfo?secret=1")).unwrap();
    let err = ProviderHttp::new(None)
        .unwrap()
        .get_json(&url, Some("token"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.reason, HttpFailure::ConnectionRefused),
        "{err}"
    );
    assert_eq!(err.url, format!("http://127.0.0.1:{port}/userinfo"));
    assert!(err.to_string().contains("connection refused"));
}

#[tokio::test]
async fn http_client_refuses_responses_over_one_mebibyte() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        let size = super::http::MAX_BODY + 1;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n"
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(&vec![b' '; size]).await;
    });
    let url = Url::parse(&format!("http://{addr}/big")).unwrap();
    let err = ProviderHttp::new(None)
        .unwrap()
        .get_json(&url, None)
        .await
        .unwrap_err();
    assert!(matches!(err.reason, HttpFailure::TooLarge(_)), "{err}");
}

#[tokio::test]
async fn auth_params_and_extra_scopes_reach_the_authorization_url() {
    let s = setup(
        IdpOptions::default(),
        "extra_scopes = [\"groups\"]\nauth_params = { prompt = \"select_account\", acr_values = \"mfa\" }",
    )
    .await;
    let (url, _) = s.provider().begin(&s.redirect_uri).unwrap();
    let query: HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["prompt"], "select_account");
    assert_eq!(query["acr_values"], "mfa");
    assert!(
        query["scope"].split(' ').any(|s| s == "groups"),
        "{}",
        query["scope"]
    );
}

#[tokio::test]
async fn oauth2_providers_are_ready_at_once_and_begin_with_state_and_pkce() {
    let toml = r#"
        [session]
        secret = "0123456789abcdef0123456789abcdef"
        [providers.gh]
        kind = "github"
        client_id = "Iv1.abc"
        client_secret = "s"
        organizations = ["acme"]
        auth_params = { allow_signup = "false" }
        icon = "/static/github.svg"
        "#;
    let config = crate::config::from_figment(Figment::from(Toml::string(toml))).unwrap();
    let providers =
        Providers::start(&config, Default::default()).expect("TLS client for providers");
    assert!(providers.all_ready());
    let gh = providers.get("gh").unwrap();
    assert_eq!(
        (gh.display_name(), gh.icon()),
        ("GitHub", Some("/static/github.svg"))
    );
    let redirect = config.redirect_uri("gh");
    let (url, secrets) = gh.begin(&redirect).unwrap();
    assert!(
        url.as_str()
            .starts_with("https://github.com/login/oauth/authorize?")
    );
    let query: HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], "Iv1.abc");
    assert_eq!(query["redirect_uri"], redirect.as_str());
    assert_eq!(query["scope"], "read:user user:email read:org");
    assert_eq!(query["state"], secrets.state);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["allow_signup"], "false");
    assert!(!query.contains_key("nonce") && secrets.nonce.is_empty());
    assert!(secrets.pkce_verifier.len() >= 43);
    let (_, again) = gh.begin(&redirect).unwrap();
    assert_ne!(again.state, secrets.state);
}

#[test]
fn a_huge_expires_in_saturates_instead_of_overflowing() {
    assert_eq!(expires_at(Some(u64::MAX)), Some(u64::MAX));
    assert_eq!(expires_at(None), None);
    let at = expires_at(Some(60)).unwrap();
    assert!((59..=60).contains(&(at - crate::now_unix())), "{at}");
}

#[test]
fn a_callback_never_prints_its_code() {
    let callback = Callback {
        code: "c0de-never-logged",
        iss: Some("https://idp.example"),
    };
    let shown = format!("{callback:?}");
    assert!(!shown.contains("c0de-never-logged"), "{shown}");
    assert!(shown.contains("https://idp.example"), "{shown}");
}

mod lifecycle;
mod private_ca;

#[test]
fn max_age_reads_cache_control() {
    let with = |values: &[&str]| {
        let mut response = ::http::Response::new(Vec::new());
        for v in values {
            response.headers_mut().append(
                ::http::header::CACHE_CONTROL,
                ::http::HeaderValue::from_str(v).unwrap(),
            );
        }
        super::http::max_age(&response)
    };
    assert_eq!(with(&[]), None);
    assert_eq!(
        with(&["public, max-age=3600"]),
        Some(Duration::from_secs(3600))
    );
    assert_eq!(
        with(&["public", "Max-Age=\"60\""]),
        Some(Duration::from_secs(60))
    );
    assert_eq!(with(&["max-age=3600, no-cache"]), Some(Duration::ZERO));
    assert_eq!(with(&["no-store"]), Some(Duration::ZERO));
    assert_eq!(with(&["max-age=soon"]), None);
    assert_eq!(with(&["max-age=-1"]), None);
}
