use super::*;
use figment::Jail;

const MINIMAL: &str = r#"
[session]
secret = "0123456789abcdef0123456789abcdef"
[providers.corp]
issuer = "https://sso.example.com"
client_id = "portcullis"
client_secret = "s3cret"
"#;

fn parse(toml: &str) -> Result<Config, ConfigError> {
    from_figment(Figment::from(Toml::string(toml)))
}

fn problems(toml: &str) -> Vec<String> {
    parse(toml).expect_err("config should be refused").problems
}

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:4180");
    assert_eq!(c.upstream.timeout, Duration::from_secs(60));
    assert_eq!(c.session.lifetime, Duration::from_secs(12 * 3600));
    assert_eq!(c.session.cookie_name, "_portcullis");
    assert!(!c.session.secure, "auto with an http public_url");
    assert_eq!(c.access.allowed_email_domains, vec!["*"]);
    assert!(c.access.require_email_verified);
    assert_eq!(c.headers.len(), 6);
    assert_eq!(c.headers[5].0.as_str(), "x-forwarded-provider");
    assert_eq!(c.headers[0].0.as_str(), "x-forwarded-user");
    let p = &c.providers[0];
    assert_eq!((p.id.as_str(), p.display_name.as_str()), ("corp", "corp"));
    assert_eq!(p.scopes, ["openid", "email", "profile"]);
    assert_eq!(p.token_auth_method, TokenAuthMethod::ClientSecretBasic);
    assert_eq!(
        c.redirect_uri("corp").as_str(),
        "http://127.0.0.1:4180/oauth2/callback/corp"
    );
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let got = problems(
        r#"
[server]
public_url = "ftp://x"
[upstream]
timeout = "soon"
[session]
secret = "short"
[providers.corp]
issuer = "https://sso.example.com"
"#,
    );
    let joined = got.join("\n");
    for key in [
        "server.public_url:",
        "upstream.timeout:",
        "session.secret:",
        "providers.corp.client_id: missing",
    ] {
        assert!(joined.contains(key), "expected {key} in:\n{joined}");
    }
}

#[test]
fn a_secret_of_the_wrong_type_is_named_but_never_echoed() {
    for toml in [
        "[session]\nsecret = 1234567890123456789\n",
        "[session]\nprevious_secrets = [9876543210987]\n",
        "[providers.corp]\nclient_secret = 5555555555555\n",
    ] {
        let got = problems(toml).join("\n");
        assert!(got.contains("not shown: it is a secret"), "{got}");
        for digits in ["1234567890123456789", "9876543210987", "5555555555555"] {
            assert!(!got.contains(digits), "secret echoed: {got}");
        }
    }
}

#[test]
fn a_toml_syntax_error_gives_the_position_but_not_the_line() {
    let got = problems("[session]\nsecret = s3cr3t-without-quotes\n").join("\n");
    assert!(got.contains("line 2"), "{got}");
    assert!(!got.contains("s3cr3t"), "the line was echoed: {got}");
}

#[test]
fn type_errors_name_the_key_not_a_serde_dump() {
    let got = problems("[server]\nmax_header_bytes = \"lots\"\n");
    assert!(got[0].starts_with("server.max_header_bytes:"), "{got:?}");
    let got = problems("[server]\nlisten_on = \"x\"\n");
    assert!(got[0].contains("listen_on"), "{got:?}");
}

#[test]
fn https_public_url_makes_cookies_secure_and_a_path_in_it_is_refused() {
    let c = parse(&format!(
        "{MINIMAL}\n[server]\npublic_url = \"https://app.example.com/\"\n"
    ))
    .unwrap();
    assert!(c.session.secure);
    assert_eq!(
        c.redirect_uri("corp").as_str(),
        "https://app.example.com/oauth2/callback/corp"
    );
    // Only redirect URIs would honour a prefix; the flow cookie, the pages and
    // the routing would not, so every sign-in would fail.
    let got = problems(&format!(
        "{MINIMAL}\n[server]\npublic_url = \"https://app.example.com/base/\"\n"
    ));
    assert!(
        got.iter()
            .any(|p| p.starts_with("server.public_url:") && p.contains("must not have a path")),
        "{got:?}"
    );
}

#[test]
fn secret_from_file_and_not_both() {
    let dir = std::env::temp_dir().join(format!("portcullis-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, "from-file-0123456789abcdef0123456789\n").unwrap();
    let toml = MINIMAL.replace(
        "secret = \"0123456789abcdef0123456789abcdef\"",
        &format!("secret_file = {:?}", file.display().to_string()),
    );
    let c = parse(&toml).unwrap();
    assert_eq!(
        c.session.secret.expose(),
        "from-file-0123456789abcdef0123456789"
    );
    let both = MINIMAL.replace(
        "client_secret = \"s3cret\"",
        &format!(
            "client_secret = \"x\"\nclient_secret_file = {:?}",
            file.display().to_string()
        ),
    );
    assert!(
        problems(&both)
            .join("\n")
            .contains("providers.corp.client_secret: set either")
    );
}

#[test]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
fn environment_overrides_nested_keys_and_secrets_are_redacted() {
    Jail::expect_with(|jail| {
        jail.create_file("config.toml", MINIMAL)?;
        jail.set_env("PORTCULLIS_PROVIDERS__CORP__CLIENT_SECRET", "from-env");
        jail.set_env("PORTCULLIS_UPSTREAM__URL", "http://10.0.0.1:9000");
        let c = load(Path::new("config.toml"), true).map_err(|e| e.to_string())?;
        assert_eq!(
            c.providers[0].client_secret.as_ref().unwrap().expose(),
            "from-env"
        );
        assert_eq!(c.upstream.url.as_str(), "http://10.0.0.1:9000/");
        let printed = toml::to_string(&c).map_err(|e| e.to_string())?;
        assert!(
            !printed.contains("from-env") && !printed.contains("0123456789abcdef"),
            "{printed}"
        );
        assert!(printed.contains("[redacted]"));
        Ok(())
    });
}

#[test]
fn cookie_domain_must_be_a_domain_name() {
    let bad =
        format!("{MINIMAL}\n").replace("[session]\n", "[session]\ndomain = \"ex ample.com\\n\"\n");
    assert!(problems(&bad).join("\n").contains("session.domain:"));
    let good =
        format!("{MINIMAL}\n").replace("[session]\n", "[session]\ndomain = \".example.com\"\n");
    assert_eq!(
        parse(&good).unwrap().session.domain.as_deref(),
        Some(".example.com")
    );
}

#[test]
fn a_named_config_file_must_exist() {
    let err = load(Path::new("/nonexistent/portcullis.toml"), true).unwrap_err();
    assert!(err.problems[0].contains("file not found"), "{err}");
}

#[test]
fn the_reference_config_toml_is_valid() {
    let reference = include_str!("../../config.toml");
    let secret = Toml::string("[session]\nsecret = \"0123456789abcdef0123456789abcdef\"");
    from_figment(Figment::from(Toml::string(reference)).merge(secret))
        .unwrap_or_else(|e| panic!("config.toml is out of sync with the code:\n{e}"));
}

#[test]
fn the_reference_config_toml_lifecycle_examples_are_valid_keys() {
    let reference = include_str!("../../config.toml");
    let examples: Vec<&str> = reference
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with("end_session_url = ") || l.starts_with("revocation_url = "))
        .map(|l| l.split(" #").next().unwrap_or(l))
        .collect();
    assert_eq!(examples.len(), 2, "{examples:?}");
    let p = provider(&format!(
        "issuer = \"https://sso.example.com\"\nidp_logout = true\n{}",
        examples.join("\n")
    ))
    .unwrap();
    assert!(p.end_session_url.is_some() && p.revocation_url.is_some());
}

// === providers ===

/// A config whose only provider is `[providers.p]` with `keys`.
fn provider(keys: &str) -> Result<ProviderConfig, ConfigError> {
    parse(&format!(
        "[session]\nsecret = \"0123456789abcdef0123456789abcdef\"\n[providers.p]\nclient_id = \"c\"\n{keys}\n"
    ))
    .map(|c| c.providers[0].clone())
}

fn provider_problems(keys: &str) -> String {
    provider(keys)
        .expect_err("provider should be refused")
        .problems
        .join("\n")
}

fn oidc(p: &ProviderConfig) -> &OidcSettings {
    match &p.protocol {
        Protocol::Oidc(o) => o,
        Protocol::OAuth2(_) => panic!("{} is not OIDC", p.id),
    }
}

fn oauth2(p: &ProviderConfig) -> &OAuth2Settings {
    match &p.protocol {
        Protocol::OAuth2(o) => o,
        Protocol::Oidc(_) => panic!("{} is not OAuth 2.0", p.id),
    }
}

#[test]
fn presets_need_only_client_credentials_and_name_themselves() {
    for (kind, name, issuer) in [
        ("google", "Google", "https://accounts.google.com/"),
        (
            "microsoft",
            "Microsoft",
            "https://login.microsoftonline.com/common/v2.0",
        ),
        ("gitlab", "GitLab", "https://gitlab.com/"),
        ("linkedin", "LinkedIn", "https://www.linkedin.com/oauth"),
    ] {
        let p = provider(&format!("kind = \"{kind}\"\nclient_secret = \"s\"")).unwrap();
        assert_eq!(p.display_name, name);
        assert_eq!(oidc(&p).issuer.as_str(), issuer, "{kind}");
        let mut scopes = vec!["openid", "email", "profile"];
        if kind == "microsoft" {
            scopes.push("offline_access");
        }
        assert_eq!(p.scopes, scopes, "{kind}");
    }
    let p = provider("kind = \"linkedin\"").unwrap();
    assert_eq!(p.token_auth_method, TokenAuthMethod::ClientSecretPost);
    assert!(p.client_secret.is_none(), "a public client");
    let p = provider("kind = \"github\"\nclient_secret = \"s\"\ndisplay_name = \"Code\"").unwrap();
    assert_eq!(p.display_name, "Code");
}

#[test]
fn github_urls_derive_from_the_base_url() {
    let p = provider("kind = \"github\"\nclient_secret = \"s\"").unwrap();
    let o = oauth2(&p);
    assert_eq!(
        o.auth_url.as_str(),
        "https://github.com/login/oauth/authorize"
    );
    assert_eq!(
        o.token_url.as_str(),
        "https://github.com/login/oauth/access_token"
    );
    assert_eq!(o.userinfo_url.as_str(), "https://api.github.com/user");
    assert_eq!(
        o.emails_url.as_ref().unwrap().as_str(),
        "https://api.github.com/user/emails"
    );
    assert_eq!(p.scopes, ["read:user", "user:email"]);

    let p = provider(
        "kind = \"github\"\nclient_secret = \"s\"\nbase_url = \"https://ghe.example.com/\"\nteams = [\"acme/platform\"]",
    )
    .unwrap();
    let o = oauth2(&p);
    assert_eq!(
        o.auth_url.as_str(),
        "https://ghe.example.com/login/oauth/authorize"
    );
    assert_eq!(
        o.token_url.as_str(),
        "https://ghe.example.com/login/oauth/access_token"
    );
    assert_eq!(
        o.userinfo_url.as_str(),
        "https://ghe.example.com/api/v3/user"
    );
    assert_eq!(p.scopes, ["read:user", "user:email", "read:org"]);
    assert_eq!(
        o.profile,
        Profile::Github {
            organizations: vec![],
            teams: vec!["acme/platform".into()]
        }
    );
}

#[test]
fn facebook_urls_derive_from_the_graph_version() {
    let p =
        provider("kind = \"facebook\"\nclient_secret = \"s\"\ngraph_version = \"v19.0\"").unwrap();
    let o = oauth2(&p);
    assert_eq!(
        o.auth_url.as_str(),
        "https://www.facebook.com/v19.0/dialog/oauth"
    );
    assert_eq!(
        o.token_url.as_str(),
        "https://graph.facebook.com/v19.0/oauth/access_token"
    );
    assert_eq!(
        o.userinfo_url.as_str(),
        "https://graph.facebook.com/v19.0/me?fields=id,name,email,picture"
    );
    assert_eq!(p.scopes, ["email", "public_profile"]);
    let p = provider("kind = \"facebook\"\nclient_secret = \"s\"").unwrap();
    assert!(oauth2(&p).token_url.as_str().contains("/v21.0/"));
    assert!(
        provider_problems("kind = \"facebook\"\nclient_secret = \"s\"\ngraph_version = \"21\"")
            .contains("providers.p.graph_version:")
    );
}

#[test]
fn a_facebook_userinfo_override_without_fields_keeps_the_presets() {
    let me = |userinfo: &str| {
        let p = provider(&format!(
            "kind = \"facebook\"\nclient_secret = \"s\"\nuserinfo_url = \"{userinfo}\""
        ))
        .unwrap();
        oauth2(&p).userinfo_url.to_string()
    };
    let graph = "https://graph.example.com/v21.0/me";
    assert_eq!(me(graph), format!("{graph}?fields=id,name,email,picture"));
    assert_eq!(
        me(&format!("{graph}?locale=de_DE")),
        format!("{graph}?locale=de_DE&fields=id,name,email,picture")
    );
    // The operator's own fields are theirs to choose.
    assert_eq!(
        me(&format!("{graph}?fields=id,email")),
        format!("{graph}?fields=id,email")
    );
}

#[test]
fn microsoft_tenant_shapes_the_issuer_and_is_checked() {
    let p = provider(
        "kind = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\nallowed_tenants = [\"ABC-1\"]",
    )
    .unwrap();
    assert_eq!(
        oidc(&p).issuer.as_str(),
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0"
    );
    assert_eq!(
        oidc(&p).checks,
        IdTokenChecks::Tenants {
            allowed: vec!["abc-1".into()]
        }
    );
    for bad in ["common/../x", "a b", "", "x?y"] {
        assert!(
            provider_problems(&format!("kind = \"microsoft\"\ntenant = {bad:?}"))
                .contains("providers.p.tenant:"),
            "{bad:?}"
        );
    }
    assert!(
        provider_problems("kind = \"microsoft\"\nallowed_tenants = [\"a/b\"]")
            .contains("providers.p.allowed_tenants:")
    );
}

#[test]
fn google_hosted_domain_is_sent_as_hd_and_enforced() {
    let p = provider("kind = \"google\"\nhosted_domain = \"Example.com\"").unwrap();
    assert_eq!(p.auth_params["hd"], "Example.com".to_lowercase());
    assert_eq!(
        oidc(&p).checks,
        IdTokenChecks::HostedDomain("example.com".into())
    );
    assert!(
        provider_problems(
            "kind = \"google\"\nhosted_domain = \"x.com\"\nauth_params = { hd = \"y.com\" }"
        )
        .contains("providers.p.auth_params.hd:")
    );
    assert!(
        provider_problems("kind = \"google\"\nhosted_domain = \"not a domain\"")
            .contains("providers.p.hosted_domain:")
    );
}

#[test]
fn gitlab_issuer_is_its_base_url() {
    let p = provider("kind = \"gitlab\"\nbase_url = \"https://git.example.com/\"").unwrap();
    assert_eq!(oidc(&p).issuer.as_str(), "https://git.example.com/");
    assert!(p.fetch_userinfo, "GitLab's groups are in userinfo only");
    let p = provider("kind = \"gitlab\"\nbase_url = \"https://x.example.com/gitlab\"\nissuer = \"https://sso.example.com\"").unwrap();
    assert_eq!(
        oidc(&p).issuer.as_str(),
        "https://sso.example.com/",
        "issuer overrides"
    );
}

#[test]
fn every_preset_url_can_be_overridden() {
    let p = provider(
        "kind = \"github\"\nclient_secret = \"s\"\nauth_url = \"http://127.0.0.1:9/a\"\ntoken_url = \"http://127.0.0.1:9/t\"\nuserinfo_url = \"http://127.0.0.1:9/user\"\nemails_url = \"http://127.0.0.1:9/e\"",
    )
    .unwrap();
    let o = oauth2(&p);
    assert_eq!(
        [
            o.auth_url.as_str(),
            o.token_url.as_str(),
            o.userinfo_url.as_str(),
            o.emails_url.as_ref().unwrap().as_str()
        ],
        [
            "http://127.0.0.1:9/a",
            "http://127.0.0.1:9/t",
            "http://127.0.0.1:9/user",
            "http://127.0.0.1:9/e"
        ]
    );
    let p = provider("kind = \"google\"\nissuer = \"http://127.0.0.1:9\"\ntoken_url = \"http://127.0.0.1:9/tok\"").unwrap();
    assert_eq!(oidc(&p).issuer.as_str(), "http://127.0.0.1:9/");
    assert_eq!(
        oidc(&p).token_url.as_ref().unwrap().as_str(),
        "http://127.0.0.1:9/tok"
    );
    assert!(
        provider_problems("kind = \"github\"\nclient_secret = \"s\"\ntoken_url = \"ftp://x\"")
            .contains("providers.p.token_url:")
    );
}

#[test]
fn oidc_needs_an_issuer_and_openid() {
    assert!(provider_problems("kind = \"oidc\"").contains("providers.p.issuer: missing"));
    assert!(
        provider_problems("issuer = \"https://x.example\"\nscopes = [\"email\"]")
            .contains("providers.p.scopes: must include \"openid\"")
    );
}

#[test]
fn github_and_facebook_cannot_be_public_clients() {
    for kind in ["github", "facebook"] {
        let got = provider_problems(&format!("kind = \"{kind}\""));
        assert!(got.contains("providers.p.client_secret: missing"), "{got}");
        assert!(got.contains("no public clients"), "{got}");
    }
}

#[test]
fn oauth2_needs_its_endpoints_and_maps_claims() {
    let got = provider_problems("kind = \"oauth2\"");
    for key in [
        "auth_url: missing",
        "token_url: missing",
        "userinfo_url: missing",
    ] {
        assert!(got.contains(&format!("providers.p.{key}")), "{got}");
    }
    let p = provider(
        r#"kind = "oauth2"
auth_url = "https://id.example.com/authorize"
token_url = "https://id.example.com/token"
userinfo_url = "https://api.example.com/me"
[providers.p.claims]
sub = "data.id"
email = "data.attributes.email""#,
    )
    .unwrap();
    assert!(p.scopes.is_empty());
    let Profile::Mapped(paths) = &oauth2(&p).profile else {
        panic!("mapped profile expected")
    };
    assert_eq!(
        (
            paths.sub.as_str(),
            paths.email.as_str(),
            paths.name.as_str()
        ),
        ("data.id", "data.attributes.email", "name")
    );
    let bad = "kind = \"oauth2\"\nauth_url = \"https://a.example\"\ntoken_url = \"https://a.example\"\nuserinfo_url = \"https://a.example\"\nclaims = { sub = \"data..id\" }";
    assert!(provider_problems(bad).contains("providers.p.claims.sub:"));
    let unknown = "kind = \"oauth2\"\nauth_url = \"https://a.example\"\ntoken_url = \"https://a.example\"\nuserinfo_url = \"https://a.example\"\nclaims = { uid = \"id\" }";
    assert!(problems(&format!("[session]\nsecret = \"0123456789abcdef0123456789abcdef\"\n[providers.p]\nclient_id = \"c\"\n{unknown}")).join("\n").contains("uid"));
}

#[test]
fn keys_of_another_kind_are_refused_not_ignored() {
    let got = provider_problems(
        "kind = \"github\"\nclient_secret = \"s\"\ntenant = \"common\"\nhosted_domain = \"x.com\"\nissuer = \"https://x.example\"\ngraph_version = \"v1.0\"\nwww_base_url = \"https://x.example\"",
    );
    for key in [
        "tenant",
        "hosted_domain",
        "issuer",
        "graph_version",
        "www_base_url",
    ] {
        assert!(
            got.contains(&format!("providers.p.{key}: applies only to kind")),
            "{got}"
        );
    }
    assert!(
        provider_problems("issuer = \"https://x.example\"\norganizations = [\"acme\"]")
            .contains("kind = github")
    );
}

#[test]
fn extra_scopes_append_and_auth_params_pass_except_owned_ones() {
    let p = provider(
        "issuer = \"https://x.example\"\nextra_scopes = [\"groups\", \"email\"]\nauth_params = { prompt = \"select_account\", domain_hint = \"example.com\" }",
    )
    .unwrap();
    assert_eq!(p.scopes, ["openid", "email", "profile", "groups"]);
    assert_eq!(p.auth_params["prompt"], "select_account");
    assert_eq!(p.auth_params["domain_hint"], "example.com");
    // Spelled out, not read from OWNED_AUTH_PARAMS: a name dropped there must fail here.
    for owned in [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ] {
        let got = provider_problems(&format!(
            "issuer = \"https://x.example\"\nauth_params = {{ {owned} = \"x\" }}"
        ));
        assert!(
            got.contains(&format!("providers.p.auth_params.{owned}: portcullis sets")),
            "{got}"
        );
    }
    assert!(
        provider_problems("issuer = \"https://x.example\"\nextra_scopes = [\"a b\"]")
            .contains("providers.p.scopes:")
    );
}

#[test]
fn icons_are_urls_data_images_or_paths() {
    for good in [
        "https://cdn.example.com/g.svg",
        "http://x.example/i.png",
        "data:image/svg+xml;base64,PHN2Zz4=",
        "/static/icon.png",
    ] {
        let p = provider(&format!("issuer = \"https://x.example\"\nicon = {good:?}")).unwrap();
        assert_eq!(p.icon.as_deref(), Some(good));
    }
    for bad in [
        "javascript:alert(1)",
        "//evil.example/x.png",
        "icon.png",
        "data:text/html,<b>",
        "/a\nb",
    ] {
        assert!(
            provider_problems(&format!("issuer = \"https://x.example\"\nicon = {bad:?}"))
                .contains("providers.p.icon:"),
            "{bad:?}"
        );
    }
}

#[test]
fn sign_in_template_is_read_at_start_and_must_list_the_providers() {
    let dir = std::env::temp_dir().join(format!("portcullis-tpl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.html");
    std::fs::write(&good, "<h1>Hello</h1>{{providers}}").unwrap();
    let with = |path: &std::path::Path| {
        format!(
            "{MINIMAL}\n[sign_in]\ntemplate = {:?}\n",
            path.display().to_string()
        )
    };
    let c = parse(&with(&good)).unwrap();
    assert_eq!(
        c.sign_in.template.as_deref(),
        Some("<h1>Hello</h1>{{providers}}")
    );
    assert_eq!(c.sign_in.template_path.as_deref(), Some(good.as_path()));
    assert!(
        problems(&with(&dir.join("missing.html")))
            .join("\n")
            .contains("sign_in.template: cannot read")
    );
    let no_list = dir.join("bare.html");
    std::fs::write(&no_list, "<h1>Hello</h1>").unwrap();
    assert!(
        problems(&with(&no_list))
            .join("\n")
            .contains("{{providers}}")
    );
    assert!(parse(MINIMAL).unwrap().sign_in.template.is_none());
}

#[test]
fn bearer_token_keys_are_read() {
    let c = parse(&format!(
        "{MINIMAL}\n[access]\nbearer_tokens = true\nintrospection_cache = \"30s\"\n"
    ))
    .unwrap();
    assert!(c.access.bearer_tokens);
    assert_eq!(c.access.introspection_cache, Duration::from_secs(30));
    let c = parse(MINIMAL).unwrap();
    assert!(!c.access.bearer_tokens);
    assert_eq!(c.access.introspection_cache, Duration::from_secs(60));
    assert!(c.upstream.pass_authorization, "passed on by default");
    let c = parse(&format!(
        "{MINIMAL}\n[upstream]\nurl = \"http://127.0.0.1:1\"\npass_authorization = false\n\
         [[upstreams]]\npath_prefix = \"/a/\"\nurl = \"http://127.0.0.1:2\"\npass_authorization = false\n\
         [providers.x]\nissuer = \"https://x.example\"\nclient_id = \"c\"\n\
         extra_audiences = [\"api\"]\nintrospection = true\n\
         introspection_url = \"https://x.example/introspect\"\n"
    ))
    .unwrap();
    assert!(!c.upstream.pass_authorization);
    assert!(!c.upstreams[0].upstream.pass_authorization);
    let x = c.providers.iter().find(|p| p.id == "x").unwrap();
    assert_eq!(x.extra_audiences, ["api"]);
    assert!(x.introspection);
    assert_eq!(
        x.introspection_url.as_ref().map(|u| u.as_str()),
        Some("https://x.example/introspect")
    );
    let got = problems(&format!(
        "{MINIMAL}\n[providers.gh]\nkind = \"github\"\nclient_id = \"c\"\nclient_secret = \"s\"\nintrospection = true\n"
    ));
    assert!(
        got.iter()
            .any(|p| p.starts_with("providers.gh.introspection:")),
        "{got:?}"
    );
    let got = problems(&format!(
        "{MINIMAL}\n[providers.x]\nissuer = \"https://x.example\"\nclient_id = \"c\"\nintrospection_url = \"http://x.example/i\"\n"
    ));
    assert!(
        got.iter()
            .any(|p| p.starts_with("providers.x.introspection_url:")),
        "{got:?}"
    );
}

#[test]
fn two_header_entries_naming_one_header_are_refused() {
    let got = problems(&format!(
        "{MINIMAL}\n[headers]\n\"X-User\" = \"email\"\n\"x-user\" = \"sub\"\n"
    ));
    assert!(
        got.iter().any(|p| p.contains("names the same header")),
        "{got:?}"
    );
}

#[test]
fn an_identity_header_named_like_a_forwarding_or_framing_header_is_refused() {
    for name in ["X-Forwarded-For", "x-real-ip", "Host", "Content-Length"] {
        let got = problems(&format!("{MINIMAL}\n[headers]\n\"{name}\" = \"email\"\n"));
        assert!(
            got.iter()
                .any(|p| p.contains("portcullis sets or removes itself")),
            "{name}: {got:?}"
        );
    }
    assert!(
        parse(&format!(
            "{MINIMAL}\n[headers]\n\"X-Forwarded-Name\" = \"name\"\n"
        ))
        .is_ok()
    );
}

#[test]
fn a_url_with_credentials_is_refused_without_echoing_them() {
    let got = problems(&format!(
        "{MINIMAL}\n[upstream]\nurl = \"http://app:hunter2@127.0.0.1:8080\"\n"
    ))
    .join("\n");
    assert!(
        got.contains("upstream.url: must not carry a user name or password"),
        "{got}"
    );
    assert!(!got.contains("hunter2"), "{got}");
}

#[test]
fn a_url_with_credentials_that_does_not_parse_is_not_echoed() {
    let got = problems(&format!(
        "{MINIMAL}\n[upstream]\nurl = \"http://app:hunter2@127.0.0.1:99999\"\n"
    ))
    .join("\n");
    assert!(got.contains("upstream.url: is not a URL"), "{got}");
    assert!(!got.contains("hunter2"), "{got}");
}

#[test]
fn an_https_issuer_refuses_configured_plain_http_endpoints_by_key() {
    let got = problems(&format!(
        "{MINIMAL}token_url = \"http://sso.internal:8080/token\"\n\
         userinfo_url = \"https://sso.example.com/userinfo\"\n"
    ))
    .join("\n");
    assert!(
        got.contains("providers.corp.token_url: must be https, as the issuer is"),
        "{got}"
    );
    assert!(!got.contains("userinfo_url"), "{got}");
}

/// [`MINIMAL`] with `extra` keys in its `[session]` table.
fn with_session(extra: &str) -> String {
    MINIMAL.replace("[session]\n", &format!("[session]\n{extra}\n"))
}

#[test]
fn https_host_only_session_cookie_defaults_to_a_host_prefixed_name() {
    let https = |extra: &str| {
        parse(&format!(
            "{}\n[server]\npublic_url = \"https://app.example.com\"\n",
            with_session(extra)
        ))
        .unwrap()
        .session
        .cookie_name
    };
    assert_eq!(https(""), "__Host-_portcullis");
    // The default written out, as the reference config.toml has it, is the default.
    assert_eq!(https("cookie_name = \"_portcullis\""), "__Host-_portcullis");
    // A shared domain, a name of the operator's or insecure cookies keep theirs.
    assert_eq!(https("domain = \".example.com\""), "_portcullis");
    assert_eq!(https("cookie_name = \"_app\""), "_app");
    assert_eq!(https("secure = false"), "_portcullis");
    assert_eq!(parse(MINIMAL).unwrap().session.cookie_name, "_portcullis");
}

#[test]
fn a_prefixed_cookie_name_must_keep_its_promise() {
    for (extra, public_url) in [
        ("cookie_name = \"__Host-app\"", "http://127.0.0.1:4180"),
        (
            "cookie_name = \"__Host-app\"\ndomain = \".example.com\"",
            "https://app.example.com",
        ),
        ("cookie_name = \"__Secure-app\"", "http://127.0.0.1:4180"),
    ] {
        let got = problems(&format!(
            "{}\n[server]\npublic_url = \"{public_url}\"\n",
            with_session(extra)
        ));
        assert!(
            got.iter().any(|p| p.starts_with("session.cookie_name:")),
            "{extra}: {got:?}"
        );
    }
    let c = parse(&format!(
        "{}\n[server]\npublic_url = \"https://app.example.com\"\n",
        with_session("cookie_name = \"__Host-app\"")
    ))
    .unwrap();
    assert_eq!(c.session.cookie_name, "__Host-app");
}

#[test]
fn connection_limits_have_defaults_and_are_checked() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.server.idle_timeout, Duration::from_secs(120));
    assert_eq!(c.server.body_read_timeout, Duration::from_secs(30));
    assert!(c.server.max_connections >= 1);
    let c = parse(&format!(
        "{MINIMAL}\n[server]\nidle_timeout = \"5s\"\nbody_read_timeout = \"2s\"\nmax_connections = 7\n"
    ))
    .unwrap();
    assert_eq!(c.server.idle_timeout, Duration::from_secs(5));
    assert_eq!(c.server.body_read_timeout, Duration::from_secs(2));
    assert_eq!(c.server.max_connections, 7);
    let got = problems(&format!(
        "{MINIMAL}\n[server]\nidle_timeout = \"0s\"\nbody_read_timeout = \"soon\"\nmax_connections = 0\n"
    ));
    for key in [
        "server.idle_timeout:",
        "server.body_read_timeout:",
        "server.max_connections:",
    ] {
        assert!(got.iter().any(|p| p.starts_with(key)), "{key} {got:?}");
    }
}

#[test]
fn default_max_connections_fits_the_open_file_limit() {
    use super::raw::default_max_connections;
    assert_eq!(default_max_connections(None), 10_000);
    assert_eq!(default_max_connections(Some(1_048_576)), 10_000);
    // systemd's default soft limit: two descriptors a connection, 64 spare.
    assert_eq!(default_max_connections(Some(1024)), 480);
    assert_eq!(default_max_connections(Some(10)), 1);
}

fn redis_of(config: &Config) -> &RedisConfig {
    match &config.session.store {
        StoreConfig::Redis(redis) => redis,
        StoreConfig::Cookie => panic!("the cookie store"),
    }
}

#[test]
fn the_cookie_store_is_the_default() {
    assert!(matches!(
        parse(MINIMAL).unwrap().session.store,
        StoreConfig::Cookie
    ));
    let c = parse(&with_session("store = \"cookie\"")).unwrap();
    assert!(matches!(c.session.store, StoreConfig::Cookie));
}

#[test]
fn the_redis_store_takes_a_url_and_never_prints_its_password() {
    let c = parse(&with_session(
        "store = \"redis\"\nredis_url = \"rediss://portcullis:hunter2@redis.internal:6380/2\"",
    ))
    .unwrap();
    let redis = redis_of(&c);
    let url = redis.url.as_ref().unwrap();
    assert_eq!(
        url.expose(),
        "rediss://portcullis:hunter2@redis.internal:6380/2"
    );
    assert!(url.is_tls());
    assert_eq!(url.host(), "redis.internal:6380");
    assert_eq!(redis.key_prefix, "portcullis:");
    assert!(redis.sentinels.is_empty());
    let shown = [
        url.to_string(),
        format!("{url:?}"),
        format!("{c:?}"),
        toml::to_string(&c).unwrap(),
    ];
    for shown in shown {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    assert_eq!(
        url.to_string(),
        "rediss://portcullis:[redacted]@redis.internal:6380/2"
    );
    assert!(toml::to_string(&c).unwrap().contains("redis.internal:6380"));
}

#[test]
fn the_redis_url_can_come_from_a_file() {
    let dir = std::env::temp_dir().join(format!("portcullis-redis-url-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("redis_url");
    std::fs::write(&file, "redis://:pw@127.0.0.1:6379\n").unwrap();
    let c = parse(&with_session(&format!(
        "store = \"redis\"\nredis_url_file = {file:?}\nredis_key_prefix = \"app1:\""
    )))
    .unwrap();
    let redis = redis_of(&c);
    assert_eq!(
        redis.url.as_ref().unwrap().expose(),
        "redis://:pw@127.0.0.1:6379"
    );
    assert_eq!(redis.key_prefix, "app1:");
    let got = problems(&with_session(&format!(
        "store = \"redis\"\nredis_url_file = {:?}",
        dir.join("missing")
    )))
    .join("\n");
    assert!(got.contains("session.redis_url_file: cannot read"), "{got}");
    assert!(
        !got.contains("session.store:"),
        "one problem, not two: {got}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_redis_store_without_a_server_is_refused_with_the_keys_to_set() {
    let got = problems(&with_session("store = \"redis\""));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("session.store: \"redis\" needs session.redis_url"),
        "{got:?}"
    );
    assert!(got[0].contains("redis_sentinels"), "{got:?}");
}

#[test]
fn redis_keys_without_the_redis_store_are_refused_not_ignored() {
    for key in [
        "redis_url = \"redis://127.0.0.1/\"",
        "redis_sentinels = [\"127.0.0.1:26379\"]",
        "redis_master_name = \"mymaster\"",
        "redis_key_prefix = \"x:\"",
    ] {
        for store in ["", "store = \"cookie\""] {
            let got = problems(&with_session(&format!("{store}\n{key}")));
            let name = key.split(' ').next().unwrap();
            assert!(
                got.iter()
                    .any(|p| p.starts_with(&format!("session.{name}:"))
                        && p.contains("set session.store = \"redis\"")),
                "{key}: {got:?}"
            );
        }
    }
}

#[test]
fn bad_redis_urls_are_refused_without_echoing_them() {
    for url in [
        "http://:hunter2@127.0.0.1:6379",
        "hunter2",
        "redis://:hunter2@[::1",
        "redis://:hunter2@127.0.0.1:6379/notadb",
        "redis://:hunter2@0.0.0.0:6379",
        "rediss://:hunter2@redis.internal:6380/#insecure",
    ] {
        let got = problems(&with_session(&format!(
            "store = \"redis\"\nredis_url = {url:?}"
        )))
        .join("\n");
        assert!(got.starts_with("session.redis_url: "), "{url}: {got}");
        assert!(
            got.contains("redis://") && got.contains("rediss://"),
            "{got}"
        );
        assert!(!got.contains("hunter2"), "{url}: {got}");
    }
    let got = problems(&with_session(
        "store = \"redis\"\nredis_url = \"redis://a\"\nredis_url_file = \"/x\"",
    ));
    assert!(got.iter().any(|p| p.contains("not both")), "{got:?}");
}

#[test]
fn sentinels_and_the_master_name_go_together() {
    let c = parse(&with_session(
        "store = \"redis\"\nredis_sentinels = [\"s1:26379\", \"10.0.0.2:26379\"]\nredis_master_name = \"mymaster\"",
    ))
    .unwrap();
    let redis = redis_of(&c);
    assert_eq!(redis.sentinels, ["s1:26379", "10.0.0.2:26379"]);
    assert_eq!(redis.master_name.as_deref(), Some("mymaster"));
    assert!(redis.url.is_none());

    let got = problems(&with_session(
        "store = \"redis\"\nredis_sentinels = [\"s1:26379\"]",
    ));
    assert!(
        got.iter()
            .any(|p| p.starts_with("session.redis_master_name: missing")),
        "{got:?}"
    );
    let got = problems(&with_session(
        "store = \"redis\"\nredis_url = \"redis://r\"\nredis_master_name = \"mymaster\"",
    ));
    assert!(
        got.iter()
            .any(|p| p.starts_with("session.redis_sentinels: missing")),
        "{got:?}"
    );
    for bad in [
        "s1",
        "s1:",
        ":26379",
        "s1:0",
        "s1:port",
        "s 1:26379",
        "s1/x:26379",
    ] {
        let got = problems(&with_session(&format!(
            "store = \"redis\"\nredis_sentinels = [{bad:?}]\nredis_master_name = \"m\""
        )));
        assert!(
            got.iter()
                .any(|p| p.starts_with("session.redis_sentinels:") && p.contains("host:port")),
            "{bad}: {got:?}"
        );
    }
}

#[test]
fn a_bad_redis_key_prefix_is_refused() {
    for bad in ["", "has space:", "tab\t"] {
        let got = problems(&with_session(&format!(
            "store = \"redis\"\nredis_url = \"redis://r\"\nredis_key_prefix = {bad:?}"
        )));
        assert!(
            got.iter()
                .any(|p| p.starts_with("session.redis_key_prefix:")),
            "{bad:?}: {got:?}"
        );
    }
}

#[test]
fn refresh_timing_has_defaults_and_is_checked() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.session.refresh_before, Duration::from_secs(60));
    assert_eq!(c.session.refresh_interval, None);
    let with = |keys: &str| MINIMAL.replace("[session]\n", &format!("[session]\n{keys}\n"));
    let c = parse(&with("refresh_before = \"2m\"\nrefresh_interval = \"15m\"")).unwrap();
    assert_eq!(c.session.refresh_before, Duration::from_secs(120));
    assert_eq!(c.session.refresh_interval, Some(Duration::from_secs(900)));
    let refused = problems(&with("refresh_interval = \"often\"")).join("\n");
    assert!(refused.contains("session.refresh_interval:"), "{refused}");
}

#[test]
fn presets_ask_for_refresh_tokens_where_the_provider_needs_it() {
    let google = provider("kind = \"google\"\nclient_secret = \"s\"").unwrap();
    assert_eq!(google.auth_params["access_type"], "offline");
    assert!(
        !google.auth_params.contains_key("prompt"),
        "documented, not defaulted"
    );
    let online = provider("kind = \"google\"\nauth_params = { access_type = \"online\" }").unwrap();
    assert_eq!(online.auth_params["access_type"], "online");
    let corp = provider("issuer = \"https://x.example\"").unwrap();
    assert!(!corp.auth_params.contains_key("access_type"));
    assert!(!corp.scopes.contains(&"offline_access".to_owned()));
}

#[test]
fn idp_logout_end_session_url_and_revocation_url_are_read() {
    let p = provider("issuer = \"https://x.example\"").unwrap();
    assert!(!p.idp_logout);
    assert_eq!((p.end_session_url, p.revocation_url), (None, None));
    let p = provider(
        "issuer = \"https://x.example\"\nidp_logout = true\nend_session_url = \"https://x.example/logout\"\nrevocation_url = \"https://x.example/revoke\"",
    )
    .unwrap();
    assert!(p.idp_logout);
    assert_eq!(
        p.end_session_url.unwrap().as_str(),
        "https://x.example/logout"
    );
    assert_eq!(
        p.revocation_url.unwrap().as_str(),
        "https://x.example/revoke"
    );
    // An OpenID Connect provider's endpoint may come from discovery: checked then.
    for kind in [
        "oidc\"\nissuer = \"https://x.example",
        "microsoft",
        "gitlab",
    ] {
        assert!(
            provider(&format!("kind = \"{kind}\"\nidp_logout = true"))
                .unwrap()
                .idp_logout
        );
    }
    let gh = provider(
        "kind = \"github\"\nclient_secret = \"s\"\nidp_logout = true\nend_session_url = \"https://sso.example/logout\"",
    )
    .unwrap();
    assert!(gh.idp_logout);
}

#[test]
fn idp_logout_without_an_end_session_endpoint_is_refused_naming_the_fix() {
    for kind in [
        "github\"\nclient_secret = \"s",
        "facebook\"\nclient_secret = \"s",
        "google",
        "oauth2\"\nauth_url = \"https://a.example/a\"\ntoken_url = \"https://a.example/t\"\nuserinfo_url = \"https://a.example/u",
    ] {
        let got = provider_problems(&format!("kind = \"{kind}\"\nidp_logout = true"));
        assert!(
            got.contains("providers.p.idp_logout:")
                && got.contains("set providers.p.end_session_url")
                && got.contains("or remove idp_logout"),
            "{kind}: {got}"
        );
    }
}

#[test]
fn lifecycle_urls_must_be_absolute_and_https_with_an_https_issuer() {
    let got = provider_problems(
        "issuer = \"https://x.example\"\nend_session_url = \"http://x.example/logout\"\nrevocation_url = \"/revoke\"",
    );
    assert!(
        got.contains("providers.p.end_session_url: must be https"),
        "{got}"
    );
    assert!(got.contains("providers.p.revocation_url:"), "{got}");
    let p = provider(
        "issuer = \"http://127.0.0.1:9000\"\nrevocation_url = \"http://127.0.0.1:9000/revoke\"",
    )
    .unwrap();
    assert!(p.revocation_url.is_some());
}

#[test]
fn metrics_listen_is_off_by_default_and_parsed_when_set() {
    assert_eq!(parse(MINIMAL).unwrap().server.metrics_listen, None);
    let config = parse(&format!(
        "[server]\nmetrics_listen = \"127.0.0.1:9180\"\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(
        config.server.metrics_listen,
        Some("127.0.0.1:9180".parse().unwrap())
    );
}

#[test]
fn a_bad_metrics_listen_names_the_key() {
    for (value, says) in [
        ("nine", "is not an address"),
        ("127.0.0.1:4180", "must differ"),
    ] {
        let got = problems(&format!(
            "[server]\nmetrics_listen = \"{value}\"\n{MINIMAL}"
        ));
        assert!(
            got.iter()
                .any(|p| p.starts_with("server.metrics_listen:") && p.contains(says)),
            "{value}: {got:?}"
        );
    }
}

#[test]
fn log_defaults_to_text_at_info_with_access_lines() {
    let log = parse(MINIMAL).unwrap().log;
    assert_eq!(log.format, LogFormat::Text);
    assert_eq!(log.level, "info");
    assert!(log.access);
    let log = parse(&format!(
        "{MINIMAL}\n[log]\nformat = \"json\"\nlevel = \"info,portcullis=debug\"\naccess = false\n"
    ))
    .unwrap()
    .log;
    assert_eq!(log.format, LogFormat::Json);
    assert_eq!(log.level, "info,portcullis=debug");
    assert!(!log.access);
}

#[test]
fn a_bad_log_format_or_level_names_the_key() {
    for (toml, key) in [
        ("[log]\nformat = \"xml\"\n", "log.format"),
        ("[log]\nlevel = \"portcullis=loud\"\n", "log.level"),
    ] {
        let got = problems(&format!("{MINIMAL}\n{toml}"));
        assert!(
            got.iter().any(|p| p.starts_with(&format!("{key}:"))),
            "{toml}: {got:?}"
        );
    }
}

#[test]
fn the_reference_config_toml_metrics_example_is_a_valid_key() {
    let reference = include_str!("../../config.toml");
    let example = reference
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .find(|l| l.starts_with("metrics_listen = "))
        .map(|l| l.split(" #").next().unwrap_or(l))
        .expect("config.toml shows metrics_listen");
    let config = parse(&format!("[server]\n{example}\n{MINIMAL}")).unwrap();
    assert!(config.server.metrics_listen.is_some());
}

#[test]
fn tls_files_are_read_and_checked_at_start_up() {
    let ca = tls::test_pki::TestCa::new("config");
    let ca_file = ca.ca_file();
    let client = ca.leaf(&["portcullis"]);
    let cert = ca.write("client.pem", &client.cert_pem);
    let key = ca.write("client-key.pem", &client.key_pem);
    let toml = format!(
        "[server]\nextra_ca_file = {ca:?}\n[upstream]\nurl = \"https://10.0.0.7:8443\"\nca_file = {ca:?}\ntls_server_name = \"app.internal\"\nclient_cert_file = {cert:?}\nclient_key_file = {key:?}\n{MINIMAL}",
        ca = ca_file.display().to_string(),
        cert = cert.display().to_string(),
        key = key.display().to_string(),
    );
    let c = parse(&toml).unwrap();
    assert_eq!(c.server.extra_ca_file.unwrap().certs.len(), 1);
    assert_eq!(c.upstream.ca_file.unwrap().certs.len(), 1);
    assert_eq!(c.upstream.tls_server_name.as_deref(), Some("app.internal"));
    assert_eq!(c.upstream.client_cert.unwrap().chain.len(), 1);
    assert!(!c.upstream.insecure_skip_verify);

    // A key where certificates belong, and a certificate where the key belongs.
    let swapped = toml
        .replace(&ca_file.display().to_string(), &key.display().to_string())
        .replace(
            &format!("client_key_file = {:?}", key.display().to_string()),
            &format!("client_key_file = {:?}", cert.display().to_string()),
        );
    let got = problems(&swapped).join("\n");
    for key in [
        "server.extra_ca_file:",
        "upstream.ca_file:",
        "upstream.client_key_file:",
    ] {
        assert!(got.contains(key), "{key} in {got}");
    }
    assert!(got.contains("holds no PEM certificate"), "{got}");
}

#[test]
fn tls_keys_need_an_https_upstream_and_go_together() {
    let got = problems(&format!(
        "[upstream]\nurl = \"http://127.0.0.1:8080\"\ninsecure_skip_verify = true\ntls_server_name = \"app.internal\"\n{MINIMAL}"
    ));
    for key in [
        "upstream.insecure_skip_verify:",
        "upstream.tls_server_name:",
    ] {
        assert!(
            got.iter()
                .any(|p| p.starts_with(key) && p.contains("only to an https://")),
            "{key} in {got:?}"
        );
    }
    let got = problems(&format!(
        "[upstream]\nurl = \"https://app\"\nclient_cert_file = \"c.pem\"\ntls_server_name = \"not a name\"\n{MINIMAL}"
    ));
    assert!(
        got.iter()
            .any(|p| p.starts_with("upstream.client_cert_file:")
                && p.contains("set both or neither")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|p| p.starts_with("upstream.tls_server_name:") && p.contains("not a DNS name")),
        "{got:?}"
    );
}

#[test]
fn upstream_protocol_must_fit_the_url_scheme() {
    let with = |url: &str, protocol: &str| {
        parse(&format!(
            "[upstream]\nurl = {url:?}\nprotocol = {protocol:?}\n{MINIMAL}"
        ))
    };
    assert_eq!(
        parse(MINIMAL).unwrap().upstream.protocol,
        UpstreamProtocol::Http1
    );
    for (url, protocol, expected) in [
        ("http://app:50051", "h2c", UpstreamProtocol::H2c),
        ("https://app", "h2", UpstreamProtocol::H2),
        ("https://app", "auto", UpstreamProtocol::Auto),
        ("http://app", "auto", UpstreamProtocol::Auto),
    ] {
        assert_eq!(with(url, protocol).unwrap().upstream.protocol, expected);
    }
    for (url, protocol, says) in [
        ("http://app", "h2", "needs an https://"),
        ("https://app", "h2c", "needs an http://"),
    ] {
        let got = with(url, protocol).expect_err("refused").problems;
        assert!(
            got.iter()
                .any(|p| p.starts_with("upstream.protocol:") && p.contains(says)),
            "{got:?}"
        );
    }
    assert!(with("http://app", "http3").is_err());
}

#[test]
fn upstreams_take_every_upstream_key_and_their_own() {
    let c = parse(&format!(
        r#"{MINIMAL}
[[upstreams]]
host = "Wiki.Example.com"
path_prefix = "/wiki/"
url = "http://127.0.0.1:9000/base"
timeout = "5s"
pass_access_token = true
protocol = "h2c"
[[upstreams.rules]]
path = "/wiki/public/"
public = true
[upstreams.headers]
"X-Wiki-User" = "sub"
[[upstreams]]
path_prefix = "/b"
url = "http://127.0.0.1:9001"
"#
    ))
    .unwrap();
    assert!(!c.upstream_enabled, "only [[upstreams]]: no catch-all");
    let [a, b] = &c.upstreams[..] else {
        panic!("two routes")
    };
    assert_eq!(a.host.as_ref().unwrap().to_string(), "wiki.example.com");
    assert_eq!(a.path_prefix.to_string(), "/wiki");
    assert_eq!(a.upstream.url.as_str(), "http://127.0.0.1:9000/base");
    assert_eq!(a.upstream.timeout, Duration::from_secs(5));
    assert!(a.upstream.pass_access_token);
    assert_eq!(a.upstream.protocol, UpstreamProtocol::H2c);
    assert_eq!(a.rules.as_ref().unwrap()[0].path, "/wiki/public/");
    assert_eq!(a.headers.as_ref().unwrap()[0].0.as_str(), "x-wiki-user");
    assert!(b.host.is_none() && b.rules.is_none() && b.headers.is_none());
    assert_eq!(b.upstream.timeout, Duration::from_secs(60));

    let both = parse(&format!(
        "{MINIMAL}\n[upstream]\nurl = \"http://127.0.0.1:8000\"\n[[upstreams]]\npath_prefix = \"/b\"\nurl = \"http://127.0.0.1:9001\""
    ))
    .unwrap();
    assert!(both.upstream_enabled);
    assert!(
        parse(MINIMAL).unwrap().upstream_enabled,
        "neither: the default upstream"
    );
}

#[test]
fn upstreams_problems_are_reported_with_their_dotted_keys() {
    let got = problems(&format!(
        r#"{MINIMAL}
[upstream]
url = "http://127.0.0.1:8000"
host = "x.example.com"
[[upstreams]]
host = "bad host"
path_prefix = "wiki"
[[upstreams]]
host = "*.example.com"
url = "http://127.0.0.1:9001"
ca_file = "/nonexistent"
timeout = "soon"
[[upstreams.rules]]
path = "no-slash"
[upstreams.headers]
"bad header" = "sub"
[[upstreams]]
host = "a.example.com"
path_prefix = "/x/"
url = "http://127.0.0.1:9002"
[[upstreams]]
path_prefix = "/"
url = "http://127.0.0.1:9003"
"#
    ));
    let has = |start: &str, says: &str| {
        assert!(
            got.iter().any(|p| p.starts_with(start) && p.contains(says)),
            "no {start:?} saying {says:?} in {got:#?}"
        )
    };
    has("upstream.host:", "belongs to [[upstreams]]");
    has("upstreams[0].host:", "is not a host name");
    has("upstreams[0].path_prefix:", "must start with '/'");
    has("upstreams[0].url:", "missing");
    has("upstreams[1].ca_file:", "https://");
    has("upstreams[1].timeout:", "not a duration");
    has("upstreams[1].rules[0].path:", "must start with '/'");
    has(
        "upstreams[1].headers.bad header:",
        "not a valid header name",
    );
    has("upstreams[2]:", "never used: upstreams[1] comes first");
    has("upstream:", "never used: upstreams[3]");
}

#[test]
fn duplicate_and_shadowed_upstreams_are_refused() {
    let route = |host: &str, prefix: &str| {
        let host = if host.is_empty() {
            String::new()
        } else {
            format!("host = {host:?}\n")
        };
        format!("[[upstreams]]\n{host}path_prefix = {prefix:?}\nurl = \"http://127.0.0.1:9000\"\n")
    };
    let shadowed = [
        (("a.example.com", "/x"), ("a.example.com", "/x/")),
        (("A.example.com", "/x"), ("a.example.com", "/x/y")),
        (("*.example.com", "/"), ("a.example.com", "/x")),
        (("*.example.com", "/"), ("*.b.example.com", "/")),
        (("", "/x"), ("a.example.com", "/x/y")),
    ];
    for (first, second) in shadowed {
        let toml = format!(
            "{MINIMAL}\n{}{}",
            route(first.0, first.1),
            route(second.0, second.1)
        );
        let got = problems(&toml);
        assert!(
            got.iter()
                .any(|p| p.starts_with("upstreams[1]: is never used")),
            "{first:?} then {second:?}: {got:?}"
        );
    }
    let fine = [
        (("a.example.com", "/x"), ("a.example.com", "/xy")),
        (("a.example.com", "/x/y"), ("a.example.com", "/x")),
        (("a.example.com", "/"), ("*.example.com", "/")),
        (("a.example.com", "/"), ("", "/")),
        (("*.b.example.com", "/"), ("*.example.com", "/")),
    ];
    for (first, second) in fine {
        let toml = format!(
            "{MINIMAL}\n{}{}",
            route(first.0, first.1),
            route(second.0, second.1)
        );
        assert!(
            parse(&toml).is_ok(),
            "{first:?} then {second:?}: {:?}",
            parse(&toml).err()
        );
    }
}

#[test]
fn the_reference_config_toml_upstreams_example_is_valid() {
    let reference = include_str!("../../config.toml");
    let start = reference
        .find("\n# [[upstreams]]\n")
        .expect("config.toml has an [[upstreams]] example");
    let example: String = reference[start + 1..]
        .lines()
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let secret = "[session]\nsecret = \"0123456789abcdef0123456789abcdef\"\n";
    let c = from_figment(
        Figment::from(Toml::string(reference))
            .merge(Toml::string(secret))
            .merge(Toml::string(&example)),
    )
    .unwrap_or_else(|e| panic!("the [[upstreams]] example is refused:\n{e}\n{example}"));
    assert_eq!(c.upstreams.len(), 2, "{example}");
    assert!(c.upstreams[1].rules.is_some() && c.upstreams[0].headers.is_some());
}

#[test]
fn allowed_redirect_domains_are_read_and_each_bad_entry_is_named() {
    let reference = include_str!("../../config.toml");
    let documented = reference
        .lines()
        .find_map(|l| l.strip_prefix("# allowed_redirect_domains = "))
        .expect("config.toml documents access.allowed_redirect_domains");
    let good = format!("{MINIMAL}\n[access]\nallowed_redirect_domains = {documented}\n");
    let access = parse(&good).unwrap().access;
    assert_eq!(access.allowed_redirect_domains.len(), 1);
    assert_eq!(
        access.allowed_redirect_domains[0].to_string(),
        ".example.com"
    );
    let bad = format!(
        "{MINIMAL}\n[access]\nallowed_redirect_domains = [\"app.example.com:8443\", \"https://x.example.com\", \"*.example.com\"]\n"
    );
    let problems = problems(&bad).join("\n");
    assert!(
        problems.contains("access.allowed_redirect_domains[1]: \"https://x.example.com\""),
        "{problems}"
    );
    assert!(
        problems.contains("access.allowed_redirect_domains[2]: \"*.example.com\""),
        "{problems}"
    );
    assert!(!problems.contains("[0]"), "{problems}");
}

#[test]
fn new_rule_keys_are_read_and_each_problem_named_with_its_key() {
    let c = parse(&format!(
        r#"{MINIMAL}
[access]
skip_auth_preflight = true
[[rules]]
path = "/admin/"
host = "*.Example.com"
emails = ["Ada@example.com"]
domains = ["example.com", ".corp.example.com"]
claims = {{ "realm_access.roles" = ["admin"], "cognito:groups" = ["ops"] }}
[[rules]]
path = "/api/"
methods = ["GET", "OPTIONS"]
skip_preflight = true
"#
    ))
    .unwrap();
    assert!(c.access.skip_auth_preflight);
    assert_eq!(c.rules[0].host.as_deref(), Some("*.Example.com"));
    assert_eq!(c.rules[0].claims["realm_access.roles"], ["admin"]);
    assert!(c.rules[1].skip_preflight);

    let bad = |at: &str| {
        format!(
            r#"{MINIMAL}
[[{at}]]
path = "/ok"
[[{at}]]
path = "/ok2"
[[{at}]]
path = "/x"
host = "app.example.com:8443"
emails = ["nobody", "a@b@c"]
domains = ["*", "exa mple.com", "@example.com", ".example..com"]
claims = {{ "a..b" = ["x"], "roles" = [] }}
methods = ["GET"]
skip_preflight = true
[[{at}]]
path = "/y"
public = true
claims = {{ "roles" = ["x"] }}
domains = ["example.com"]
"#
        )
    };
    for (at, key) in [
        ("rules", "rules"),
        ("upstreams.rules", "upstreams[0].rules"),
    ] {
        let toml = if at == "rules" {
            bad(at)
        } else {
            bad(at).replace(
                "[[upstreams.rules]]\npath = \"/ok\"",
                "[[upstreams]]\nurl = \"http://127.0.0.1:9\"\n[[upstreams.rules]]\npath = \"/ok\"",
            )
        };
        let got = problems(&toml).join("\n");
        for expected in [
            format!("{key}[2].host: \"app.example.com:8443\" must be a host name without a port"),
            format!("{key}[2].emails: \"nobody\" is not an email address"),
            format!("{key}[2].emails: \"a@b@c\" is not an email address"),
            format!("{key}[2].domains: \"*\" admits every domain"),
            format!("{key}[2].domains: \"exa mple.com\" is not a domain"),
            format!("{key}[2].domains: \"@example.com\" is not a domain"),
            format!("{key}[2].domains: \".example..com\" is not a domain"),
            format!("{key}[2].claims.a..b: is not a claim path"),
            format!("{key}[2].claims.roles: lists no values"),
            format!("{key}[2].skip_preflight: never applies"),
            format!("{key}[3]: a public rule cannot also require domains"),
            format!("{key}[3]: a public rule cannot also require claims"),
        ] {
            assert!(got.contains(&expected), "{expected:?} missing from:\n{got}");
        }
    }
}

#[test]
fn provider_claims_work_for_every_kind_but_sub_stays_the_id_tokens() {
    let p = provider(
        "kind = \"google\"\nclient_secret = \"s\"\n[providers.p.claims]\ngroups = \"cognito:groups\"",
    )
    .unwrap();
    assert_eq!(p.claims.unwrap().groups, "cognito:groups");
    for kind in [
        "microsoft",
        "gitlab",
        "oidc\"\nissuer = \"https://id.example",
        "github",
    ] {
        let p = provider(&format!(
            "kind = \"{kind}\"\nclient_secret = \"s\"\n[providers.p.claims]\ngroups = \"realm_access.roles\""
        ))
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(p.claims.unwrap().groups, "realm_access.roles");
    }
    assert!(
        provider_problems("kind = \"google\"\n[providers.p.claims]\nsub = \"oid\"").contains(
            "providers.p.claims.sub: an OpenID Connect provider's user is the id_token's sub"
        )
    );
    assert!(
        provider_problems("kind = \"google\"\n[providers.p.claims]\ngroups = \"a..b\"")
            .contains("providers.p.claims.groups:")
    );
}

#[test]
fn microsoft_graph_base_url_defaults_and_must_be_https() {
    let p = provider("kind = \"microsoft\"").unwrap();
    assert_eq!(
        oidc(&p).graph_url.as_ref().map(Url::as_str),
        Some("https://graph.microsoft.com/")
    );
    let p =
        provider("kind = \"microsoft\"\ngraph_base_url = \"https://graph.example/base/\"").unwrap();
    assert_eq!(
        oidc(&p).graph_url.as_ref().map(Url::as_str),
        Some("https://graph.example/base")
    );
    assert!(
        provider_problems("kind = \"microsoft\"\ngraph_base_url = \"http://graph.example\"")
            .contains("providers.p.graph_base_url: must be https")
    );
    assert!(provider("kind = \"google\"\ngraph_base_url = \"https://g\"").is_err());
}

const HOOK_SECRET: &str = "hook-secret-0123456789abcdef-0123456789";

#[test]
fn login_hook_defaults_and_targets() {
    let c = parse(&format!(
        "{MINIMAL}\n[hooks]\non_login = \"http://127.0.0.1:8080/portcullis/login\"\nsecret = \"{HOOK_SECRET}\"\n"
    ))
    .unwrap();
    let hook = c.login_hook.expect("a login hook");
    assert_eq!(
        hook.on_login,
        HookTarget::Http(Url::parse("http://127.0.0.1:8080/portcullis/login").unwrap())
    );
    assert_eq!(hook.timeout, Duration::from_secs(5));
    assert_eq!(hook.on_error, OnHookError::Deny);
    assert!(!hook.on_refresh);
    assert!(parse(MINIMAL).unwrap().login_hook.is_none());

    let dir = std::env::temp_dir().join(format!("portcullis-hook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("hook-secret");
    std::fs::write(&secret_file, format!("{HOOK_SECRET}\n")).unwrap();
    let c = parse(&format!(
        "{MINIMAL}\n[hooks]\non_login = \"unix:/run/app/hook.sock\"\nsecret_file = {:?}\ntimeout = \"300ms\"\non_error = \"allow\"\non_refresh = true\n",
        secret_file.display().to_string()
    ))
    .unwrap();
    let hook = c.login_hook.unwrap();
    assert_eq!(hook.on_login, HookTarget::Unix("/run/app/hook.sock".into()));
    assert_eq!(hook.secret.expose(), HOOK_SECRET);
    assert_eq!(hook.timeout, Duration::from_millis(300));
    assert_eq!(hook.on_error, OnHookError::Allow);
    assert!(hook.on_refresh);
}

#[test]
fn login_hook_mistakes_are_refused_with_their_key() {
    let refused = |hooks: &str, key: &str, says: &str| {
        let got = problems(&format!("{MINIMAL}\n[hooks]\n{hooks}\n")).join("\n");
        assert!(
            got.contains(&format!("{key}:")) && got.contains(says),
            "{hooks}: {got}"
        );
    };
    let url = "on_login = \"http://127.0.0.1:8080/hook\"";
    let secret = format!("secret = \"{HOOK_SECRET}\"");
    refused(url, "hooks.secret", "missing");
    refused(
        &format!("{url}\nsecret = \"short\""),
        "hooks.secret",
        "too short",
    );
    refused(
        &format!("on_login = \"ftp://127.0.0.1/hook\"\n{secret}"),
        "hooks.on_login",
        "http:// or https://",
    );
    refused(
        &format!("on_login = \"unix:relative.sock\"\n{secret}"),
        "hooks.on_login",
        "absolute socket path",
    );
    refused(
        &format!("{url}\n{secret}\ntimeout = \"0s\""),
        "hooks.timeout",
        "longer than zero",
    );
    refused(
        &format!("{url}\n{secret}\non_error = \"ignore\""),
        "hooks.on_error",
        "\"deny\"",
    );
    refused(&secret, "hooks", "no on_login");
}

#[test]
fn the_login_hook_example_config_is_valid() {
    let example = include_str!("../../examples/login-hook/portcullis.toml");
    let example: String = example
        .lines()
        .map(|l| match l.starts_with("secret_file = ") {
            true => format!("secret = \"{HOOK_SECRET}\""),
            false => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = parse(&format!("{MINIMAL}\n{example}")).unwrap();
    assert!(c.login_hook.is_some());
    assert!(
        c.headers
            .iter()
            .any(|(name, claim)| name == "x-forwarded-user-id" && claim == "user_id")
    );
}

#[test]
fn assertion_is_off_by_default_and_its_keys_need_it() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.upstream.assertion, None);
    let got = problems(&format!(
        "[upstream]\nassertion_audience = \"x\"\nassertion_lifetime = \"1m\"\nassertion_key_file = \"k.pem\"\n\
         [[upstreams]]\nurl = \"http://127.0.0.1:9000\"\npath_prefix = \"/w\"\nassertion_lifetime = \"1m\"\n{MINIMAL}"
    ))
    .join("\n");
    for key in [
        "upstream.assertion_audience: has no effect without upstream.assertion = true",
        "upstream.assertion_lifetime: has no effect",
        "upstream.assertion_key_file: has no effect",
        "upstreams[0].assertion_lifetime: has no effect without upstreams[0].assertion = true",
    ] {
        assert!(got.contains(key), "{key} in\n{got}");
    }
}

#[test]
fn assertion_defaults_to_the_route_url_as_written_and_five_minutes() {
    let c = parse(&format!(
        "[upstream]\nurl = \"http://app.internal:9000\"\nassertion = true\n\
         [[upstreams]]\nurl = \"http://wiki.internal/\"\npath_prefix = \"/wiki\"\nassertion = true\n\
         assertion_audience = \"https://wiki.example.com\"\nassertion_lifetime = \"1h\"\n{MINIMAL}"
    ))
    .unwrap();
    let main = c.upstream.assertion.as_ref().unwrap();
    assert_eq!(main.audience, "http://app.internal:9000");
    assert_eq!(main.lifetime, Duration::from_secs(300));
    assert!(main.key_file.is_none());
    let wiki = c.upstreams[0].upstream.assertion.as_ref().unwrap();
    assert_eq!(wiki.audience, "https://wiki.example.com");
    assert_eq!(wiki.lifetime, Duration::from_secs(3600));
    // Without a url, the default one.
    let c = parse(&format!("[upstream]\nassertion = true\n{MINIMAL}")).unwrap();
    assert_eq!(
        c.upstream.assertion.unwrap().audience,
        "http://127.0.0.1:8080"
    );
}

#[test]
fn assertion_lifetime_and_audience_are_checked() {
    for (lifetime, accepted) in [("29s", false), ("30s", true), ("1h", true), ("61m", false)] {
        let toml =
            format!("[upstream]\nassertion = true\nassertion_lifetime = \"{lifetime}\"\n{MINIMAL}");
        match parse(&toml) {
            Ok(_) => assert!(accepted, "{lifetime} accepted"),
            Err(e) => {
                assert!(!accepted, "{lifetime} refused: {e}");
                let got = e.problems.join("\n");
                assert!(
                    got.contains("upstream.assertion_lifetime: must be between 30s and 1h"),
                    "{got}"
                );
            }
        }
    }
    let got = problems(&format!(
        "[upstream]\nassertion = true\nassertion_audience = \" \"\n{MINIMAL}"
    ))
    .join("\n");
    assert!(
        got.contains("upstream.assertion_audience: must not be empty"),
        "{got}"
    );
}

#[test]
fn assertion_key_file_is_read_and_must_hold_a_p256_key() {
    let dir = std::env::temp_dir().join(format!("portcullis-assertion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let sec1 = write(
        "sec1.pem",
        include_str!("../assertion/testdata/p256-sec1.pem"),
    );
    let pkcs8 = write(
        "pkcs8.pem",
        include_str!("../assertion/testdata/p256-pkcs8.pem"),
    );
    let rsa = write(
        "rsa.pem",
        include_str!("../assertion/testdata/rsa-pkcs8.pem"),
    );
    let key_file = |path: &str| {
        parse(&format!(
            "[upstream]\nassertion = true\nassertion_key_file = {path:?}\n{MINIMAL}"
        ))
    };
    let a = key_file(&sec1).unwrap().upstream.assertion.unwrap();
    let b = key_file(&pkcs8).unwrap().upstream.assertion.unwrap();
    let (a, b) = (a.key_file.unwrap(), b.key_file.unwrap());
    assert_eq!(a.key.kid(), b.key.kid(), "the same key in two encodings");
    assert_eq!(a.path.display().to_string(), sec1);

    let got = key_file(&rsa).unwrap_err().problems.join("\n");
    assert!(got.starts_with("upstream.assertion_key_file: "), "{got}");
    assert!(
        got.contains("is not a P-256 (prime256v1) private key"),
        "{got}"
    );
    assert!(
        got.contains("openssl ecparam -genkey -name prime256v1 -noout"),
        "{got}"
    );
    assert!(
        !got.contains("BEGIN"),
        "no key material in the message: {got}"
    );

    let missing = dir.join("missing.pem").display().to_string();
    let got = key_file(&missing).unwrap_err().problems.join("\n");
    assert!(
        got.contains("upstream.assertion_key_file: cannot read"),
        "{got}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
