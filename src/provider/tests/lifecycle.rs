//! After sign-in, against the demo identity provider over real sockets: refresh,
//! revocation, RP-initiated logout and back-channel logout tokens.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::demo::idp::LogoutTokenFlaw;

async fn signed_in(s: &Setup, sub: &str) -> SignedIn {
    s.sign_in(sub).await.expect("sign-in")
}

fn refresh_token_of(signed_in: &SignedIn) -> String {
    signed_in
        .tokens
        .refresh_token
        .clone()
        .expect("a refresh token")
}

fn payload(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

// === refresh ===

#[tokio::test]
async fn refresh_answers_new_tokens_and_rebuilds_the_claims_from_an_id_token_without_nonce() {
    let s = setup(
        IdpOptions {
            access_token_lifetime: 60,
            ..IdpOptions::default()
        },
        "",
    )
    .await;
    assert!(s.provider().can_refresh());
    let before = signed_in(&s, "ada").await;
    let rt = refresh_token_of(&before);
    let after = s.provider().refresh(&rt, "ada").await.unwrap();
    assert_ne!(after.tokens.access_token, before.tokens.access_token);
    assert_eq!(
        after.tokens.refresh_token.as_deref(),
        Some(rt.as_str()),
        "not rotated: the old one is kept"
    );
    let id_token = after.tokens.id_token.as_deref().expect("a new id_token");
    assert_ne!(Some(id_token), before.tokens.id_token.as_deref());
    assert!(
        payload(id_token).get("nonce").is_none(),
        "refreshed without nonce"
    );
    let expires_in = after.tokens.access_expires_at.unwrap() - crate::now_unix();
    assert!((50..=60).contains(&expires_in), "{expires_in}");
    assert_eq!(after.claims["sub"], "ada");
    assert_eq!(after.claims["email"], "ada@example.com");
    assert_eq!(after.claims["sid"], before.claims["sid"]);
    assert_eq!(
        after.claims["groups"],
        serde_json::json!(["admins", "engineering"])
    );
    assert_eq!(s.idp.refresh_count(), 1);
    let last = s.idp.token_requests().pop().unwrap();
    assert_eq!(
        (last.grant_type.as_str(), last.client_auth),
        ("refresh_token", "basic")
    );
}

#[tokio::test]
async fn a_rotated_refresh_token_replaces_the_old_one_which_is_then_rejected() {
    let s = setup(
        IdpOptions {
            rotate_refresh_tokens: true,
            ..IdpOptions::default()
        },
        "token_auth_method = \"client_secret_post\"",
    )
    .await;
    let rt = refresh_token_of(&signed_in(&s, "grace").await);
    let after = s.provider().refresh(&rt, "grace").await.unwrap();
    let rotated = after.tokens.refresh_token.clone().unwrap();
    assert_ne!(rotated, rt);
    assert_eq!(s.idp.token_requests().last().unwrap().client_auth, "post");
    match s.provider().refresh(&rt, "grace").await {
        Err(RefreshError::Rejected { error, .. }) => assert_eq!(error, "invalid_grant"),
        other => panic!("the replaced refresh token was accepted: {other:?}"),
    }
    assert!(s.provider().refresh(&rotated, "grace").await.is_ok());
}

#[tokio::test]
async fn a_disabled_user_is_rejected_and_the_error_carries_no_token() {
    let s = setup(IdpOptions::default(), "").await;
    let rt = refresh_token_of(&signed_in(&s, "ada").await);
    s.idp.revoke_user_grants("ada");
    let err = s.provider().refresh(&rt, "ada").await.unwrap_err();
    assert!(
        matches!(&err, RefreshError::Rejected { error, .. } if error == "invalid_grant"),
        "{err:?}"
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(&rt), "{shown}");
}

#[tokio::test]
async fn a_503_or_an_unreachable_provider_is_unavailable_not_rejected() {
    let s = setup(IdpOptions::default(), "").await;
    let rt = refresh_token_of(&signed_in(&s, "ada").await);
    s.idp.misbehave(Misbehaviour::TokenEndpointUnavailable);
    let err = s.provider().refresh(&rt, "ada").await.unwrap_err();
    assert!(matches!(err, RefreshError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("503"), "{err}");
    s.idp.misbehave(Misbehaviour::Nothing);
    assert!(s.provider().refresh(&rt, "ada").await.is_ok());

    let Setup { idp, providers, .. } = s;
    drop(idp);
    let err = providers
        .get("demo")
        .unwrap()
        .refresh(&rt, "ada")
        .await
        .unwrap_err();
    assert!(matches!(err, RefreshError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn a_refreshed_id_token_for_another_user_or_badly_signed_is_invalid() {
    let s = setup(IdpOptions::default(), "").await;
    let rt = refresh_token_of(&signed_in(&s, "ada").await);
    for (m, expected) in [
        (Misbehaviour::RefreshedIdTokenForAnotherUser, "another user"),
        (Misbehaviour::BadSignature, "signature"),
        (Misbehaviour::WrongIssuer, "issuer"),
        (Misbehaviour::WrongAudience, "audiences"),
        (Misbehaviour::Expired, "expired"),
    ] {
        s.idp.misbehave(m);
        match s.provider().refresh(&rt, "ada").await {
            Err(RefreshError::Invalid { reason, .. }) => {
                assert!(reason.contains(expected), "{m:?}: {reason}");
                assert!(!reason.contains("eyJ"), "{m:?} leaks a token: {reason}");
            }
            other => panic!("{m:?} was not Invalid: {other:?}"),
        }
    }
    s.idp.misbehave(Misbehaviour::Nothing);
    assert!(matches!(
        s.provider().refresh(&rt, "grace").await,
        Err(RefreshError::Invalid { .. })
    ));
    assert!(s.provider().refresh(&rt, "ada").await.is_ok());
}

#[tokio::test]
async fn without_a_new_id_token_claims_come_from_userinfo_and_must_be_the_same_user() {
    let s = setup(
        IdpOptions {
            id_token_on_refresh: false,
            ..IdpOptions::default()
        },
        "",
    )
    .await;
    let rt = refresh_token_of(&signed_in(&s, "ada").await);
    let after = s.provider().refresh(&rt, "ada").await.unwrap();
    assert_eq!(after.tokens.id_token, None, "the caller keeps the old one");
    assert_eq!(after.claims["sub"], "ada");
    assert_eq!(after.claims["email"], "ada@example.com");
    assert!(after.claims.get("iss").is_none(), "only userinfo's claims");
    s.idp.misbehave(Misbehaviour::UserinfoSubMismatch);
    assert!(matches!(
        s.provider().refresh(&rt, "ada").await,
        Err(RefreshError::Invalid { .. })
    ));
}

#[tokio::test]
async fn an_oauth2_provider_refreshes_by_form_post_and_reads_the_profile_again() {
    let s = setup(IdpOptions::default(), "").await;
    let rt = refresh_token_of(&signed_in(&s, "grace").await);
    let issuer = s.idp.issuer().as_str().trim_end_matches('/').to_owned();
    let toml = format!(
        r#"
        [session]
        secret = "0123456789abcdef0123456789abcdef"
        [providers.plain]
        kind = "oauth2"
        client_id = "portcullis-demo"
        client_secret = "demo-secret"
        auth_url = "{issuer}/authorize"
        token_url = "{issuer}/token"
        userinfo_url = "{issuer}/userinfo"
        "#
    );
    let config = crate::config::from_figment(Figment::from(Toml::string(&toml))).unwrap();
    let providers = Providers::start(&config, Default::default()).unwrap();
    let plain = providers.get("plain").unwrap();
    assert!(plain.can_refresh());
    let after = plain.refresh(&rt, "grace").await.unwrap();
    assert_eq!(after.claims["sub"], "grace");
    assert_eq!(after.claims["email"], "grace@example.com");
    assert_eq!(after.tokens.refresh_token.as_deref(), Some(rt.as_str()));
    assert!(after.tokens.access_token.is_some() && after.tokens.id_token.is_none());
    assert_eq!(s.idp.token_requests().last().unwrap().client_auth, "basic");
    assert!(matches!(
        plain.refresh(&rt, "ada").await,
        Err(RefreshError::Invalid { .. })
    ));
    s.idp.revoke_user_grants("grace");
    assert!(matches!(
        plain.refresh(&rt, "grace").await,
        Err(RefreshError::Rejected { .. })
    ));
    s.idp.misbehave(Misbehaviour::TokenEndpointUnavailable);
    assert!(matches!(
        plain.refresh(&rt, "grace").await,
        Err(RefreshError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn facebook_cannot_refresh() {
    let toml = r#"
        [session]
        secret = "0123456789abcdef0123456789abcdef"
        [providers.fb]
        kind = "facebook"
        client_id = "1"
        client_secret = "s"
        "#;
    let config = crate::config::from_figment(Figment::from(Toml::string(toml))).unwrap();
    let providers = Providers::start(&config, Default::default()).unwrap();
    let fb = providers.get("fb").unwrap();
    assert!(!fb.can_refresh());
    assert!(matches!(
        fb.refresh("rt", "1").await,
        Err(RefreshError::Rejected { .. })
    ));
    assert!(!fb.backchannel_logout_supported());
    assert_eq!(
        fb.verify_logout_token("x.y.z").await,
        Err(LogoutTokenError::NotSupported)
    );
    let back = Url::parse("https://app.example/oauth2/signed_out").unwrap();
    assert_eq!(fb.end_session_url(None, &back, "st"), None);
    assert_eq!(fb.revocation_url(), None);
}

// === revocation ===

#[tokio::test]
async fn revocation_posts_both_tokens_with_their_hints_and_the_client_auth() {
    for (extra, opts, auth) in [
        ("", IdpOptions::default(), "basic"),
        (
            "token_auth_method = \"client_secret_post\"",
            IdpOptions::default(),
            "post",
        ),
        ("", public_client(), "none"),
    ] {
        let s = setup(opts, extra).await;
        let tokens = signed_in(&s, "ada").await.tokens;
        s.provider().revoke(&tokens).await;
        let revoked: HashSet<String> = s.idp.revoked().into_iter().collect();
        let expected: HashSet<String> = [
            tokens.refresh_token.clone().unwrap(),
            tokens.access_token.clone().unwrap(),
        ]
        .into();
        assert_eq!(revoked, expected, "{auth}");
        let seen = s.idp.revocation_requests();
        assert!(
            seen.iter()
                .all(|r| r.client_auth == auth && r.client_ok && r.known),
            "{auth}: {seen:?}"
        );
        let hints: HashSet<_> = seen
            .iter()
            .filter_map(|r| r.token_type_hint.as_deref())
            .collect();
        assert_eq!(hints, ["refresh_token", "access_token"].into());
        let rt = tokens.refresh_token.unwrap();
        assert!(matches!(
            s.provider().refresh(&rt, "ada").await,
            Err(RefreshError::Rejected { .. })
        ));
    }
}

#[tokio::test]
async fn a_failing_revocation_is_logged_and_returns() {
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = setup(
        IdpOptions::default(),
        &format!("revocation_url = \"http://127.0.0.1:{port}/revoke\""),
    )
    .await;
    assert_eq!(
        s.provider().revocation_url().unwrap().as_str(),
        format!("http://127.0.0.1:{port}/revoke")
    );
    let tokens = signed_in(&s, "ada").await.tokens;
    tokio::time::timeout(Duration::from_secs(5), s.provider().revoke(&tokens))
        .await
        .expect("bounded");
    assert!(s.idp.revoked().is_empty());
    // Nothing to revoke, nothing sent.
    s.provider().revoke(&Tokens::default()).await;
}

// === RP-initiated logout ===

#[tokio::test]
async fn end_session_url_carries_the_hint_client_return_uri_and_state_and_the_idp_honours_it() {
    let back = Url::parse("http://127.0.0.1:4180/oauth2/signed_out").unwrap();
    let off = setup(IdpOptions::default(), "").await;
    assert_eq!(off.provider().end_session_url(None, &back, "st"), None);

    let s = setup(IdpOptions::default(), "idp_logout = true").await;
    let signed_in = signed_in(&s, "ada").await;
    let sid = s.idp.sid_of("ada").unwrap();
    let hint = signed_in.tokens.id_token.as_deref().unwrap();
    let url = s
        .provider()
        .end_session_url(Some(hint), &back, "st&1")
        .unwrap();
    let issuer = s.idp.issuer().as_str().trim_end_matches('/').to_owned();
    assert_eq!(
        url.as_str().split('?').next().unwrap(),
        format!("{issuer}/end_session")
    );
    let query: HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["id_token_hint"], hint);
    assert_eq!(query["client_id"], "portcullis-demo");
    assert_eq!(query["post_logout_redirect_uri"], back.as_str());
    assert_eq!(query["state"], "st&1");
    let without_hint = s.provider().end_session_url(None, &back, "st").unwrap();
    assert!(
        !without_hint
            .query_pairs()
            .any(|(k, _)| k == "id_token_hint")
    );

    let response = super::http::ProviderHttp::new(None)
        .unwrap()
        .send(::http::Request::get(url.as_str()).body(Vec::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        response.headers()["location"],
        "http://127.0.0.1:4180/oauth2/signed_out?state=st%261"
    );
    assert!(!s.idp.has_session(&sid));
    assert!(s.idp.end_session_calls()[0].accepted);
}

#[tokio::test]
async fn end_session_url_overrides_discovery_and_idp_logout_without_an_endpoint_is_off() {
    let back = Url::parse("http://127.0.0.1:4180/oauth2/signed_out").unwrap();
    let s = setup(
        IdpOptions::default(),
        "idp_logout = true\nend_session_url = \"https://sso.example/logout?tenant=a\"",
    )
    .await;
    let url = s.provider().end_session_url(None, &back, "st").unwrap();
    assert!(
        url.as_str()
            .starts_with("https://sso.example/logout?tenant=a&client_id=portcullis-demo&"),
        "{url}"
    );
    // Microsoft's layout publishes an end_session_endpoint; an OAuth 2.0 provider
    // takes end_session_url.
    let toml = r#"
        [session]
        secret = "0123456789abcdef0123456789abcdef"
        [providers.gh]
        kind = "github"
        client_id = "Iv1.abc"
        client_secret = "s"
        idp_logout = true
        end_session_url = "https://sso.example/logout"
        "#;
    let config = crate::config::from_figment(Figment::from(Toml::string(toml))).unwrap();
    let providers = Providers::start(&config, Default::default()).unwrap();
    let url = providers
        .get("gh")
        .unwrap()
        .end_session_url(Some("h"), &back, "st")
        .unwrap();
    assert!(
        url.as_str()
            .starts_with("https://sso.example/logout?id_token_hint=h&client_id=Iv1.abc&")
    );
}

// === back-channel logout ===

#[tokio::test]
async fn a_good_logout_token_names_the_session_and_every_flaw_is_refused() {
    let s = setup(IdpOptions::default(), "").await;
    assert!(s.provider().backchannel_logout_supported());
    signed_in(&s, "ada").await;
    let sid = s.idp.sid_of("ada").unwrap();
    let token = s.idp.logout_token(Some("ada"), Some(&sid)).await;
    let verified = s.provider().verify_logout_token(&token).await.unwrap();
    assert_eq!(verified.sub.as_deref(), Some("ada"));
    assert_eq!(verified.sid.as_deref(), Some(sid.as_str()));
    assert!(!verified.jti.is_empty());
    let now = crate::now_unix();
    assert!(
        verified.exp > now && verified.exp <= now + 120 + 60,
        "{}",
        verified.exp
    );
    let only_sid = s.idp.logout_token(None, Some(&sid)).await;
    let verified = s.provider().verify_logout_token(&only_sid).await.unwrap();
    assert_eq!((verified.sub, verified.sid), (None, Some(sid.clone())));
    let only_sub = s.idp.logout_token(Some("ada"), None).await;
    assert!(s.provider().verify_logout_token(&only_sub).await.is_ok());

    use LogoutTokenError as E;
    use LogoutTokenFlaw as F;
    for (flaw, expected) in [
        (
            F::WrongIssuer,
            E::Invalid("iss is not the provider's issuer"),
        ),
        (
            F::WrongAudience,
            E::Invalid("aud does not contain our client_id"),
        ),
        (F::OldIat, E::Invalid("iat is more than 5 minutes ago")),
        (F::IssuedInFuture, E::Invalid("iat is in the future")),
        (F::MissingIat, E::Invalid("iat is missing")),
        (F::Expired, E::Invalid("exp has passed")),
        (
            F::MissingEvent,
            E::Invalid("events has no back-channel logout member (a JSON object)"),
        ),
        (
            F::EventNotObject,
            E::Invalid("events has no back-channel logout member (a JSON object)"),
        ),
        (
            F::WithNonce,
            E::Invalid("nonce is present (a logout token must not have one)"),
        ),
        (F::NoSubNoSid, E::Invalid("neither sub nor sid is present")),
        (F::MissingJti, E::Invalid("jti is missing")),
        (F::BadSignature, E::Signature),
        (F::AlgNone, E::Malformed),
        (F::AlgHs256WithPublicKey, E::Algorithm),
        (F::WrongTyp, E::WrongType),
    ] {
        let token = s.idp.logout_token_with("ada", flaw).await;
        let got = s.provider().verify_logout_token(&token).await;
        assert_eq!(got, Err(expected), "{flaw:?}");
        let message = got.unwrap_err().to_string();
        assert!(
            !message.contains("eyJ") && !message.contains(&sid),
            "{message}"
        );
    }
    assert_eq!(
        s.idp.jwks_fetches(),
        1,
        "no flaw above names an unknown key"
    );
    let huge = format!("{token}{}", "A".repeat(MAX_LOGOUT_TOKEN));
    assert_eq!(
        s.provider().verify_logout_token(&huge).await,
        Err(E::TooLarge)
    );
    for garbage in ["", "not a jwt", "a.b.c", "...."] {
        assert_eq!(
            s.provider().verify_logout_token(garbage).await,
            Err(E::Malformed),
            "{garbage:?}"
        );
    }
}

#[tokio::test]
async fn a_logout_token_under_a_new_key_refetches_the_jwks_once_paced() {
    let s = setup(IdpOptions::default(), "").await;
    skip(JWKS_REFETCH_INTERVAL).await;
    let unknown = s
        .idp
        .logout_token_with("ada", LogoutTokenFlaw::UnknownKid)
        .await;
    assert_eq!(
        s.provider().verify_logout_token(&unknown).await,
        Err(LogoutTokenError::UnknownKey)
    );
    assert_eq!(s.idp.jwks_fetches(), 2, "discovery, then one re-fetch");
    // The provider rotates to that key: the next token re-fetches (after the pause).
    s.idp.rotate_key();
    let token = s.idp.logout_token(Some("ada"), None).await;
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(s.idp.jwks_fetches(), 2, "no re-fetch within the interval");
        skip(JWKS_REFETCH_INTERVAL).await;
    };
    let (verified, ()) = tokio::join!(s.provider().verify_logout_token(&token), meanwhile);
    assert!(verified.is_ok(), "{verified:?}");
    assert_eq!(s.idp.jwks_fetches(), 3);
    // The id_tokens of sign-in share the keys: no further fetch.
    assert!(s.sign_in("ada").await.is_ok());
    assert_eq!(s.idp.jwks_fetches(), 3);
}

#[tokio::test]
async fn an_undiscovered_provider_cannot_refresh_yet_but_keeps_the_session() {
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
        idp_logout = true
        "#
    );
    let config = crate::config::from_figment(Figment::from(Toml::string(&toml))).unwrap();
    let providers = Providers::start(&config, Default::default()).unwrap();
    let down = providers.get("down").unwrap();
    assert!(!down.can_refresh() && !down.backchannel_logout_supported());
    assert!(matches!(
        down.refresh("rt", "ada").await,
        Err(RefreshError::Unavailable { .. })
    ));
    assert_eq!(
        down.verify_logout_token("a.b.c").await,
        Err(LogoutTokenError::NotReady)
    );
    let back = Url::parse("http://127.0.0.1:4180/oauth2/signed_out").unwrap();
    assert_eq!(down.end_session_url(None, &back, "st"), None);
}

/// Microsoft's layout, tenant `common`: the issuer is the `{tenantid}` template.
async fn microsoft_setup(extra: &str) -> Setup {
    use crate::demo::idp::{Layout, ResponseIss};
    let idp = DemoIdp::start(IdpOptions {
        layout: Layout::MicrosoftTenants,
        response_iss: ResponseIss::Omitted,
        ..IdpOptions::default()
    })
    .await
    .unwrap();
    let toml = format!(
        r#"
        [session]
        secret = "0123456789abcdef0123456789abcdef"
        [providers.demo]
        kind = "microsoft"
        issuer = "http://{addr}/common/v2.0"
        client_id = "portcullis-demo"
        client_secret = "demo-secret"
        {extra}
        "#,
        addr = idp.addr(),
    );
    let config = crate::config::from_figment(Figment::from(Toml::string(&toml))).unwrap();
    let providers = Providers::start(&config, Default::default()).unwrap();
    assert!(providers.wait_ready(Duration::from_secs(10)).await);
    Setup {
        idp,
        providers,
        redirect_uri: config.redirect_uri("demo"),
    }
}

#[tokio::test]
async fn microsoft_refreshes_signs_out_at_its_logout_endpoint_and_revokes_nothing() {
    let s = microsoft_setup("idp_logout = true").await;
    let before = signed_in(&s, "ada").await;
    let after = s
        .provider()
        .refresh(&refresh_token_of(&before), "ada")
        .await
        .unwrap();
    assert_eq!(after.claims["tid"], crate::demo::idp::DEFAULT_TENANT_ID);
    assert_eq!(s.provider().revocation_url(), None);
    assert!(!s.provider().backchannel_logout_supported());
    let back = Url::parse("http://127.0.0.1:4180/oauth2/signed_out").unwrap();
    let url = s.provider().end_session_url(None, &back, "st").unwrap();
    assert_eq!(url.path(), "/common/oauth2/v2.0/logout");
    // A logout token under the template must name the tenant its iss is for.
    let token = s.idp.logout_token(Some("ada"), None).await;
    assert!(s.provider().verify_logout_token(&token).await.is_ok());
    let wrong = s
        .idp
        .logout_token_with("ada", LogoutTokenFlaw::WrongIssuer)
        .await;
    assert_eq!(
        s.provider().verify_logout_token(&wrong).await,
        Err(LogoutTokenError::Invalid(
            "iss is not the provider's issuer"
        ))
    );
}

// === metadata read again ===

#[tokio::test]
async fn metadata_is_read_again_when_its_max_age_passes_and_a_moved_endpoint_is_followed() {
    let idp = DemoIdp::start(IdpOptions {
        discovery_max_age: Some(1),
        ..IdpOptions::default()
    })
    .await
    .unwrap();
    let toml = format!(
        r#"
        [session]
        secret = "0123456789abcdef0123456789abcdef"
        [providers.demo]
        issuer = "{}"
        client_id = "portcullis-demo"
        client_secret = "demo-secret"
        idp_logout = true
        "#,
        idp.issuer()
    );
    let config = crate::config::from_figment(Figment::from(Toml::string(&toml))).unwrap();
    // No floor under the provider's one second, for the test's sake.
    let providers =
        Providers::start_with(&config, Default::default(), None, Duration::ZERO).unwrap();
    assert!(providers.wait_ready(Duration::from_secs(10)).await);
    let back = Url::parse("http://127.0.0.1:4180/oauth2/signed_out").unwrap();
    let end_session = || {
        providers
            .get("demo")
            .unwrap()
            .end_session_url(None, &back, "s")
            .unwrap()
    };
    assert_eq!(end_session().path(), "/end_session");

    idp.move_end_session("/v2/logout");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while end_session().path() != "/v2/logout" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the moved endpoint was not followed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn rediscovery_follows_max_age_within_the_floor_and_a_day() {
    let floor = REDISCOVERY_MIN;
    assert_eq!(rediscovery_after(None, floor), REDISCOVERY_DEFAULT);
    assert_eq!(
        rediscovery_after(Some(Duration::from_secs(3600)), floor),
        Duration::from_secs(3600)
    );
    assert_eq!(rediscovery_after(Some(Duration::ZERO), floor), floor);
    assert_eq!(
        rediscovery_after(Some(Duration::from_secs(7 * 24 * 3600)), floor),
        REDISCOVERY_DEFAULT
    );
}
