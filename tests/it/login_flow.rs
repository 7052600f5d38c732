use bytes::Bytes;
use http::StatusCode;
use portcullis::demo::idp::{IdpOptions, Misbehaviour};

use crate::sessions::deletes_cookie;
use crate::support::{Harness, Setup, param};

#[tokio::test]
async fn browser_signs_in_upstream_sees_identity_then_signs_out() {
    let h = Harness::start().await;
    let mut b = h.browser();

    // An anonymous navigation is sent to sign in, keeping where it was going.
    let resp = b.get(&h.url("/reports?q=1")).await;
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_eq!(resp.location(), "/oauth2/sign_in?rd=%2Freports%3Fq%3D1");

    let page = b.get(&h.url(resp.location())).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text()
            .contains("/oauth2/start/demo?rd=%2Freports%3Fq%3D1"),
        "{}",
        page.text()
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(page.header("content-security-policy").is_some());

    let authorize = b.start(&h, "/reports?q=1").await;
    assert!(
        authorize.starts_with(h.idp.issuer().as_str().trim_end_matches('/')),
        "{authorize}"
    );
    assert_eq!(
        param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(param(&authorize, "nonce").is_some() && param(&authorize, "state").is_some());
    assert_eq!(
        param(&authorize, "redirect_uri"),
        Some(h.url("/oauth2/callback/demo"))
    );

    let callback = b.authorize(&authorize, "ada").await;
    let done = b.get(&callback).await;
    assert_eq!(done.status, StatusCode::FOUND, "{}", done.text());
    assert_eq!(done.location(), "/reports?q=1");
    assert!(!b.session_cookies().is_empty());
    assert!(
        !b.cookies.keys().any(|k| k.contains("_flow_")),
        "flow cookie is removed after use"
    );

    let app = b.get_json(&h.url("/reports?q=1")).await;
    assert_eq!(app.status, StatusCode::OK, "{}", app.text());
    assert_eq!(
        app.upstream_header("x-forwarded-user").as_deref(),
        Some("ada")
    );
    assert_eq!(
        app.upstream_header("x-forwarded-email").as_deref(),
        Some("ada@example.com")
    );
    assert_eq!(
        app.upstream_header("x-forwarded-groups").as_deref(),
        Some("admins,engineering")
    );
    assert_eq!(
        app.upstream_header("x-forwarded-provider").as_deref(),
        Some("demo")
    );
    assert!(
        app.upstream_header("cookie").is_none(),
        "portcullis cookies never reach the upstream"
    );
    // The same cookie again: the opened session and the headers made from it
    // are reused, and still say who this is.
    let again = b.get_json(&h.url("/reports?q=2")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(
        again.upstream_header("x-forwarded-user").as_deref(),
        Some("ada")
    );
    assert_eq!(
        again.upstream_header("x-forwarded-groups").as_deref(),
        Some("admins,engineering")
    );

    let info = b.get_json(&h.url("/oauth2/userinfo")).await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.json()["email"], "ada@example.com");

    let out = b.get(&h.url("/oauth2/sign_out?rd=/bye")).await;
    assert_eq!(out.status, StatusCode::FOUND);
    assert_eq!(out.location(), "/bye");
    assert!(
        b.session_cookies().is_empty(),
        "every session chunk is cleared: {:?}",
        b.cookies
    );

    let after = b.get_json(&h.url("/reports")).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert!(after.header("www-authenticate").is_some());
    assert_eq!(after.json()["error"], "unauthenticated");
}

#[tokio::test]
async fn sign_out_deletes_every_chunk_of_a_session_too_big_for_one_cookie() {
    use portcullis::demo::idp::DemoUser;
    // Enough groups (in the identity and again in the id_token) that the sealed
    // session is split over several cookies.
    let groups: Vec<String> = (0..150)
        .map(|i| format!("project-{i:03}-contributors"))
        .collect();
    let many = DemoUser {
        sub: "many".into(),
        email: "many@example.com".into(),
        email_verified: true,
        name: "Many Groups".into(),
        preferred_username: "many".into(),
        groups: groups.clone(),
    };
    let h = Harness::with(Setup {
        idp: IdpOptions {
            users: vec![many],
            ..IdpOptions::default()
        },
        ..Setup::default()
    })
    .await;
    let mut b = h.signed_in("many").await;
    let chunks: Vec<String> = b
        .session_cookies()
        .into_iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        chunks.len() >= 2,
        "the session should need several cookies: {chunks:?}"
    );
    // The chunks are one session.
    let app = b.get_json(&h.url("/")).await;
    assert_eq!(app.status, StatusCode::OK, "{}", app.text());
    assert_eq!(
        app.upstream_header("x-forwarded-groups"),
        Some(groups.join(","))
    );

    let out = b.get(&h.url("/oauth2/sign_out?rd=/bye")).await;
    assert_eq!(out.status, StatusCode::FOUND);
    for name in &chunks {
        assert!(
            deletes_cookie(&out, name, "/"),
            "sign-out deletes {name}: {:?}",
            out.set_cookies()
        );
    }
    assert!(b.session_cookies().is_empty(), "{:?}", b.cookies);
    let after = b.get_json(&h.url("/")).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_out_deletes_the_flow_cookie_of_an_unfinished_sign_in() {
    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    // A second sign-in is started and abandoned at the provider.
    b.start(&h, "/abandoned").await;
    let flows: Vec<String> = b
        .cookies
        .keys()
        .filter(|k| k.contains("_flow_"))
        .cloned()
        .collect();
    assert_eq!(flows.len(), 1, "{:?}", b.cookies);
    let hex = flows[0].strip_prefix("_portcullis_flow_").unwrap();
    assert!(hex.len() == 16 && hex.bytes().all(|c| c.is_ascii_hexdigit()));

    let out = b.get(&h.url("/oauth2/sign_out")).await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(
        deletes_cookie(&out, &flows[0], "/oauth2/"),
        "sign-out deletes the flow cookie where it was set: {:?}",
        out.set_cookies()
    );
    assert!(deletes_cookie(&out, "_portcullis", "/"));
    assert!(b.cookies.is_empty(), "{:?}", b.cookies);
}

#[tokio::test]
async fn provider_receives_the_pkce_verifier_and_basic_client_auth() {
    let h = Harness::start().await;
    h.signed_in("ada").await;
    let seen = h.idp.token_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].client_auth, "basic");
    assert!(seen[0].had_code_verifier && seen[0].pkce_ok);
}

#[tokio::test]
async fn code_from_another_flow_fails_the_pkce_check() {
    let h = Harness::start().await;
    let mut b = h.browser();
    // Two sign-ins in two tabs: the code issued for tab A is replayed with tab B's state.
    let authorize_a = b.start(&h, "/a").await;
    let authorize_b = b.start(&h, "/b").await;
    let callback_a = b.authorize(&authorize_a, "ada").await;
    let code_a = param(&callback_a, "code").unwrap();
    let state_b = param(&authorize_b, "state").unwrap();
    let iss: String =
        url::form_urlencoded::byte_serialize(param(&callback_a, "iss").unwrap().as_bytes())
            .collect();
    let forged = h.url(&format!(
        "/oauth2/callback/demo?code={code_a}&state={state_b}&iss={iss}"
    ));
    let resp = b.get(&forged).await;
    assert_ne!(resp.status, StatusCode::FOUND, "{}", resp.text());
    assert!(b.session_cookies().is_empty());
    let seen = h.idp.token_requests();
    assert!(
        !seen.last().unwrap().pkce_ok,
        "the provider refused the mismatched verifier"
    );
}

/// RFC 9207: an authorization response whose `iss` names another issuer is
/// a mix-up; its code is never exchanged.
#[tokio::test]
async fn callback_naming_another_issuer_is_refused_before_the_code_is_exchanged() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let authorize = b.start(&h, "/").await;
    let callback = b.authorize(&authorize, "ada").await;
    let (path, query) = callback.split_once('?').unwrap();
    let mut forged = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let value = if name == "iss" {
            assert_eq!(value, h.idp.issuer().as_str().trim_end_matches('/'));
            "https://other-issuer.example".into()
        } else {
            value
        };
        forged.append_pair(&name, &value);
    }
    let resp = b.get(&format!("{path}?{}", forged.finish())).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.text());
    assert!(b.session_cookies().is_empty());
    assert!(h.idp.token_requests().is_empty(), "no code was exchanged");
}

#[tokio::test]
async fn two_tabs_sign_in_without_colliding() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let authorize_a = b.start(&h, "/a").await;
    let authorize_b = b.start(&h, "/b").await;
    let callback_b = b.authorize(&authorize_b, "ada").await;
    let callback_a = b.authorize(&authorize_a, "ada").await;
    assert_eq!(b.get(&callback_b).await.location(), "/b");
    assert_eq!(b.get(&callback_a).await.location(), "/a");
}

#[tokio::test]
async fn public_client_signs_in_with_pkce_and_no_secret() {
    let h = Harness::with(Setup {
        idp: IdpOptions {
            client_secret: None,
            ..IdpOptions::default()
        },
        ..Setup::default()
    })
    .await;
    h.signed_in("grace").await;
    let seen = h.idp.token_requests();
    assert_eq!(seen[0].client_auth, "none");
    assert!(seen[0].pkce_ok);
}

#[tokio::test]
async fn client_secret_post_is_used_when_configured() {
    let h = Harness::with(Setup {
        provider_toml: "token_auth_method = \"client_secret_post\"".into(),
        ..Setup::default()
    })
    .await;
    h.signed_in("ada").await;
    assert_eq!(h.idp.token_requests()[0].client_auth, "post");
}

#[tokio::test]
async fn provider_error_answer_is_shown_escaped_and_mints_no_session() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let authorize = b.start(&h, "/").await;
    let state = param(&authorize, "state").unwrap();
    let resp = b
        .get(&h.url(&format!(
            "/oauth2/callback/demo?state={state}&error=access_denied&error_description=%3Cscript%3Ealert(1)%3C/script%3E"
        )))
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    let text = resp.text();
    assert!(
        text.contains("access_denied") && text.contains("&lt;script&gt;"),
        "{text}"
    );
    assert!(!text.contains("<script>"));
    assert!(b.session_cookies().is_empty());

    // A description of any length, with line breaks, is cut short and kept on
    // one line: it arrives through the browser.
    let authorize = b.start(&h, "/").await;
    let state = param(&authorize, "state").unwrap();
    let long = "A".repeat(5000);
    let resp = b
        .get(&h.url(&format!(
            "/oauth2/callback/demo?state={state}&error=access_denied&error_description=x%0D%0Aforged%20{long}"
        )))
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    let text = resp.text();
    assert!(text.contains("x  forged"), "{text}");
    assert!(!text.contains(&"A".repeat(1000)), "not clipped");
}

#[tokio::test]
async fn token_endpoint_error_fails_sign_in_cleanly() {
    let h = Harness::start().await;
    h.idp.misbehave(Misbehaviour::TokenEndpointError);
    let mut b = h.browser();
    let resp = b.sign_in(&h, "ada", "/").await;
    assert!(
        resp.status.is_client_error() || resp.status == StatusCode::BAD_GATEWAY,
        "{}",
        resp.status
    );
    assert!(b.session_cookies().is_empty());
}

#[tokio::test]
async fn policy_refusal_at_sign_in_mints_no_session() {
    let h = Harness::with(Setup {
        extra_toml: "[access]\nallowed_email_domains = [\"corp.example\"]\n".into(),
        ..Setup::default()
    })
    .await;
    let mut b = h.browser();
    let resp = b.sign_in(&h, "ada", "/").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(b.session_cookies().is_empty());
}

#[tokio::test]
async fn unverified_email_is_refused_by_default() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let resp = b.sign_in(&h, "eve", "/").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text());
    assert!(b.session_cookies().is_empty());
}

#[tokio::test]
async fn forward_auth_answers_202_with_identity_or_401() {
    let h = Harness::start().await;
    let mut anon = h.browser();
    let resp = anon.get_json(&h.url("/oauth2/auth")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);

    let mut b = h.signed_in("ada").await;
    let resp = b.get_json(&h.url("/oauth2/auth")).await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert_eq!(resp.header("x-forwarded-user"), Some("ada"));
    assert_eq!(resp.header("x-forwarded-email"), Some("ada@example.com"));
}

#[tokio::test]
async fn health_and_readiness() {
    let h = Harness::start().await;
    let mut b = h.browser();
    assert_eq!(
        b.get(&h.url("/oauth2/healthz")).await.status,
        StatusCode::OK
    );
    assert_eq!(b.get(&h.url("/oauth2/readyz")).await.status, StatusCode::OK);
    // Health endpoints grant nothing else, whatever the User-Agent.
    let resp = b
        .request(
            http::Method::GET,
            &h.url("/oauth2/healthz/../../admin"),
            &[("user-agent", "kube-probe/1.29")],
            Default::default(),
        )
        .await;
    assert_ne!(resp.status, StatusCode::OK);
    let resp = b
        .request(
            http::Method::GET,
            &h.url("/admin"),
            &[("user-agent", "kube-probe/1.29")],
            Default::default(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_in_page_auto_redirects_with_one_provider_when_asked() {
    let h = Harness::with(Setup {
        extra_toml: "[sign_in]\nauto_redirect = true\n".into(),
        ..Setup::default()
    })
    .await;
    let resp = h.browser().get(&h.url("/oauth2/sign_in?rd=/x")).await;
    assert_eq!(resp.status, StatusCode::FOUND);
    assert!(
        resp.location()
            .starts_with(h.idp.issuer().as_str().trim_end_matches('/'))
    );
}

#[tokio::test]
async fn non_ascii_and_control_characters_in_claims_reach_the_upstream_encoded() {
    use portcullis::demo::idp::DemoUser;
    let zoe = DemoUser {
        sub: "zoë".into(),
        email: "zoe@example.com".into(),
        email_verified: true,
        name: "Zoë Ångström\r\nX-Forwarded-User: admin".into(),
        // Plain ASCII shaped as an encoded word (of "admin"): sent encoded too,
        // so that an app's RFC 2047 decoder reads back exactly this text.
        preferred_username: "=?UTF-8?B?YWRtaW4=?=".into(),
        groups: vec!["développeurs".into(), "ops".into()],
    };
    let h = Harness::with(Setup {
        idp: IdpOptions {
            users: vec![zoe],
            ..IdpOptions::default()
        },
        ..Setup::default()
    })
    .await;
    let mut b = h.signed_in("zoë").await;
    let resp = b.get_json(&h.url("/")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let decode = |v: String| {
        use base64::Engine;
        let inner = v
            .strip_prefix("=?UTF-8?B?")
            .and_then(|s| s.strip_suffix("?="))
            .expect("an RFC 2047 encoded word");
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(inner)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        decode(resp.upstream_header("x-forwarded-user").unwrap()),
        "zoë"
    );
    assert_eq!(
        decode(resp.upstream_header("x-forwarded-name").unwrap()),
        "Zoë Ångström\r\nX-Forwarded-User: admin"
    );
    assert_eq!(
        decode(resp.upstream_header("x-forwarded-groups").unwrap()),
        "développeurs,ops"
    );
    assert_eq!(
        decode(
            resp.upstream_header("x-forwarded-preferred-username")
                .unwrap()
        ),
        "=?UTF-8?B?YWRtaW4=?="
    );
    assert_eq!(
        resp.upstream_header("x-forwarded-email").as_deref(),
        Some("zoe@example.com")
    );
}

#[tokio::test]
async fn unknown_endpoints_are_404_and_wrong_methods_405_with_allow() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let none = Bytes::new();
    let resp = b.get_json(&h.url("/oauth2/nothing")).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(resp.json()["error"], "not_found");
    let resp = b
        .request(
            http::Method::DELETE,
            &h.url("/oauth2/userinfo"),
            &[],
            none.clone(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.header("allow"), Some("GET, HEAD"));
    let resp = b
        .request(
            http::Method::POST,
            &h.url("/oauth2/start/demo"),
            &[],
            none.clone(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    let resp = b
        .request(
            http::Method::PUT,
            &h.url("/oauth2/sign_out"),
            &[],
            none.clone(),
        )
        .await;
    assert_eq!(resp.header("allow"), Some("GET, HEAD, POST"));
    let resp = b
        .request(
            http::Method::POST,
            &h.url("/oauth2/sign_out?rd=/x"),
            &[],
            none,
        )
        .await;
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_eq!(resp.location(), "/x");
}

/// `(method, headers)` of a sign-out request and whether it should sign out.
type SignOutCase = (http::Method, &'static [(&'static str, &'static str)], bool);

#[tokio::test]
async fn a_sign_out_another_site_sent_asks_first_and_same_site_ones_sign_out() {
    use http::Method;
    let h = Harness::start().await;
    let ours = h.base.clone();
    let our_page = format!("{ours}/reports");
    let cases: Vec<SignOutCase> = vec![
        // Fetch Metadata decides where browsers send it.
        (Method::GET, &[("sec-fetch-site", "cross-site")], false),
        (
            Method::GET,
            &[("sec-fetch-site", "cross-site"), ("origin", "http://x")],
            false,
        ),
        (Method::POST, &[("sec-fetch-site", "cross-site")], false),
        (Method::GET, &[("sec-fetch-site", "same-site")], true),
        (Method::GET, &[("sec-fetch-site", "none")], true),
        (
            Method::POST,
            &[("sec-fetch-site", "same-origin"), ("origin", "null")],
            true,
        ),
        // Without it, Origin, else Referer.
        (
            Method::GET,
            &[("referer", "https://evil.example/page")],
            false,
        ),
        (Method::POST, &[("origin", "https://evil.example")], false),
        (Method::POST, &[("origin", "null")], false),
        (
            Method::POST,
            &[("origin", "https://evil.example"), ("referer", "OURS")],
            false,
        ),
        (Method::GET, &[("referer", "OURS")], true),
        (Method::POST, &[("origin", "OURS")], true),
        // A typed URL, a bookmark, curl.
        (Method::GET, &[], true),
        (Method::POST, &[], true),
    ];
    for (method, headers, signs_out) in cases {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|&(k, v)| match (k, v) {
                ("origin", "OURS") => (k, ours.as_str()),
                ("referer", "OURS") => (k, our_page.as_str()),
                kv => kv,
            })
            .collect();
        let case = format!("{method} {headers:?}");
        let mut b = h.signed_in("ada").await;
        b.start(&h, "/unfinished").await;
        let resp = b
            .request(
                method,
                &h.url("/oauth2/sign_out?rd=%2Fbye%3Fa%3D1"),
                &headers,
                Bytes::new(),
            )
            .await;
        let info = b.get_json(&h.url("/oauth2/userinfo")).await;
        if signs_out {
            assert_eq!(resp.status, StatusCode::FOUND, "{case}");
            assert_eq!(resp.location(), "/bye?a=1", "{case}");
            assert_eq!(info.status, StatusCode::UNAUTHORIZED, "{case}");
            continue;
        }
        assert_eq!(resp.status, StatusCode::OK, "{case}");
        assert!(
            resp.set_cookies().is_empty(),
            "{case}: {:?}",
            resp.set_cookies()
        );
        assert_eq!(info.status, StatusCode::OK, "{case}: still signed in");
        let page = resp.text();
        assert!(
            page.contains(r#"<form method="post" action="/oauth2/sign_out?rd=%2Fbye%3Fa%3D1">"#),
            "{case}: {page}"
        );
        assert!(
            resp.header("content-security-policy")
                .is_some_and(|csp| csp.contains("form-action 'self'")),
            "{case}"
        );
        assert_eq!(resp.header("x-frame-options"), Some("DENY"), "{case}");
        // So that its POST carries our Origin, not `null`, where Sec-Fetch-Site is unknown.
        assert_eq!(
            resp.header("referrer-policy"),
            Some("same-origin"),
            "{case}"
        );
        // The page's own button: a same-origin POST, which signs out.
        let confirmed = b
            .request(
                Method::POST,
                &h.url("/oauth2/sign_out?rd=%2Fbye%3Fa%3D1"),
                &[("sec-fetch-site", "same-origin"), ("origin", ours.as_str())],
                Bytes::new(),
            )
            .await;
        assert_eq!(confirmed.status, StatusCode::FOUND, "{case}");
        assert_eq!(confirmed.location(), "/bye?a=1", "{case}");
        assert!(b.cookies.is_empty(), "{case}: {:?}", b.cookies);
    }
}
