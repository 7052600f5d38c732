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
fn type_errors_name_the_key_not_a_serde_dump() {
    let got = problems("[server]\nmax_header_bytes = \"lots\"\n");
    assert!(got[0].starts_with("server.max_header_bytes:"), "{got:?}");
    let got = problems("[server]\nlisten_on = \"x\"\n");
    assert!(got[0].contains("listen_on"), "{got:?}");
}

#[test]
fn public_url_path_derives_redirect_uris_and_https_makes_cookies_secure() {
    let c = parse(&format!(
        "{MINIMAL}\n[server]\npublic_url = \"https://app.example.com/base/\"\n"
    ))
    .unwrap();
    assert!(c.session.secure);
    assert_eq!(
        c.redirect_uri("corp").as_str(),
        "https://app.example.com/base/oauth2/callback/corp"
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
