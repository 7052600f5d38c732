//! `[providers.<id>]` as written and its validation: each kind's preset defaults,
//! the URLs derived from base_url / tenant / graph_version, and which keys a kind takes.

use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    kind: Option<ProviderKind>,
    display_name: Option<String>,
    icon: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    extra_scopes: Vec<String>,
    #[serde(default)]
    auth_params: BTreeMap<String, String>,
    token_auth_method: Option<TokenAuthMethod>,
    fetch_userinfo: Option<bool>,
    issuer: Option<String>,
    auth_url: Option<String>,
    token_url: Option<String>,
    userinfo_url: Option<String>,
    emails_url: Option<String>,
    hosted_domain: Option<String>,
    tenant: Option<String>,
    allowed_tenants: Option<Vec<String>>,
    base_url: Option<String>,
    organizations: Option<Vec<String>>,
    teams: Option<Vec<String>>,
    graph_version: Option<String>,
    graph_base_url: Option<String>,
    www_base_url: Option<String>,
    claims: Option<ClaimPaths>,
    idp_logout: Option<bool>,
    end_session_url: Option<String>,
    revocation_url: Option<String>,
    #[serde(default)]
    extra_audiences: Vec<String>,
    introspection: Option<bool>,
    introspection_url: Option<String>,
}

/// Authorization request parameters portcullis sets itself (RFC 6749 §4.1.1,
/// RFC 7636 §4.3, OpenID Connect Core §3.1.2.1); an operator's value would break the flow.
const OWNED_AUTH_PARAMS: [&str; 8] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

/// Stands in for a refused or missing URL; validation has already reported the key.
const PLACEHOLDER_URL: &str = "https://invalid.example";

const GITHUB_COM: &str = "https://github.com";
const GITHUB_API: &str = "https://api.github.com";
const GITLAB_COM: &str = "https://gitlab.com";
const GOOGLE_ISSUER: &str = "https://accounts.google.com";
const LINKEDIN_ISSUER: &str = "https://www.linkedin.com/oauth";
const MICROSOFT_LOGIN: &str = "https://login.microsoftonline.com";
const FACEBOOK_GRAPH: &str = "https://graph.facebook.com";
const MICROSOFT_GRAPH: &str = "https://graph.microsoft.com";
const FACEBOOK_WWW: &str = "https://www.facebook.com";
const FACEBOOK_GRAPH_VERSION: &str = "v21.0";
/// What Graph's `/me` is asked for; without `fields` it answers only `id` and `name`.
const FACEBOOK_FIELDS: &str = "fields=id,name,email,picture";

pub(super) fn validate_providers(
    raw: BTreeMap<String, RawProvider>,
    p: &mut Problems,
) -> Vec<ProviderConfig> {
    let mut providers = Vec::new();
    for (id, rp) in raw {
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            p.add(
                &format!("providers.{id}"),
                "the provider id (table name) may use only letters, digits, '-' and '_'",
            );
        }
        providers.push(rp.validate(id, p));
    }
    if providers.is_empty() {
        p.add(
            "providers",
            "no provider configured; add a [providers.<id>] table (see config.toml)",
        );
    }
    providers
}

impl RawProvider {
    fn validate(self, id: String, p: &mut Problems) -> ProviderConfig {
        let key = |field: &str| format!("providers.{id}.{field}");
        let kind = self.kind.unwrap_or(ProviderKind::Oidc);
        self.refuse_keys_of_other_kinds(kind, &key, p);

        let client_id = self.client_id.clone().unwrap_or_else(|| {
            p.add(
                &key("client_id"),
                "missing; copy it from the provider's app registration",
            );
            String::new()
        });
        let client_secret = p.secret(
            &key("client_secret"),
            self.client_secret.clone(),
            self.client_secret_file.as_deref(),
        );
        // An unreadable client_secret_file is already reported.
        if client_secret.is_none()
            && self.client_secret_file.is_none()
            && matches!(kind, ProviderKind::Github | ProviderKind::Facebook)
        {
            p.add(
                &key("client_secret"),
                format_args!(
                    "missing; {} has no public clients, so set the app's client secret (or client_secret_file)",
                    kind.preset_name().unwrap_or("this provider")
                ),
            );
        }

        let protocol = match kind {
            ProviderKind::Github => Protocol::OAuth2(self.github(&key, p)),
            ProviderKind::Facebook => Protocol::OAuth2(self.facebook(&key, p)),
            ProviderKind::Oauth2 => Protocol::OAuth2(self.oauth2(&key, p)),
            _ => Protocol::Oidc(self.oidc(kind, &key, p)),
        };
        let scopes = self.scopes(kind, &key, p);
        let auth_params = self.auth_params(kind, &protocol, &key, p);
        let (end_session_url, revocation_url) = self.lifecycle_urls(&protocol, &key, p);
        let introspection_url = self.introspection_url(&protocol, &key, p);
        let introspection = self.introspection.unwrap_or(false);
        if introspection && introspection_url.is_none() && !matches!(protocol, Protocol::Oidc(_)) {
            p.add(
                &key("introspection"),
                "a plain OAuth 2.0 provider has no discovery to find its introspection endpoint; set introspection_url",
            );
        }
        let idp_logout = self.idp_logout.unwrap_or(false);
        if idp_logout && end_session_url.is_none() {
            let why = match kind {
                ProviderKind::Github | ProviderKind::Facebook | ProviderKind::Oauth2 => Some(
                    "a plain OAuth 2.0 provider has no end-session endpoint to send the browser to",
                ),
                ProviderKind::Google => Some("Google publishes no end_session_endpoint"),
                _ => None,
            };
            if let Some(why) = why {
                p.add(
                    &key("idp_logout"),
                    format_args!(
                        "{why}; set providers.{id}.end_session_url to the provider's logout URL, or remove idp_logout"
                    ),
                );
            }
        }
        if let Some(icon) = &self.icon
            && !valid_icon(icon)
        {
            p.add(
                &key("icon"),
                "must be an http(s) URL, a data:image/ URL or a path starting with '/'",
            );
        }
        // kind = "oauth2" maps its userinfo by these paths (Profile::Mapped).
        let claims = match kind {
            ProviderKind::Oauth2 => None,
            _ => self.claims.clone(),
        };
        if let Some(paths) = &claims {
            check_claim_paths(paths, &key, p);
            if kind.is_oidc() && paths.sub != ClaimPaths::default().sub {
                p.add(
                    &key("claims.sub"),
                    "an OpenID Connect provider's user is the id_token's sub; remove claims.sub",
                );
            }
        }
        let default_method = match kind {
            // LinkedIn accepts only client_secret_post; GitHub and Facebook document the body form.
            ProviderKind::Linkedin | ProviderKind::Github | ProviderKind::Facebook => {
                TokenAuthMethod::ClientSecretPost
            }
            _ => TokenAuthMethod::ClientSecretBasic,
        };
        ProviderConfig {
            display_name: self
                .display_name
                .or_else(|| kind.preset_name().map(str::to_owned))
                .unwrap_or_else(|| id.clone()),
            id,
            kind,
            icon: self.icon,
            client_id,
            client_secret,
            scopes,
            auth_params,
            token_auth_method: self.token_auth_method.unwrap_or(default_method),
            // GitLab keeps `groups`, `name` and the username out of its id_token.
            fetch_userinfo: self.fetch_userinfo.unwrap_or(kind == ProviderKind::Gitlab),
            idp_logout,
            end_session_url,
            revocation_url,
            claims,
            extra_audiences: self.extra_audiences,
            introspection,
            introspection_url,
            protocol,
        }
    }

    /// A key meant for another kind is a typo or a copy-paste: say so, not ignore it.
    fn refuse_keys_of_other_kinds(
        &self,
        kind: ProviderKind,
        key: &dyn Fn(&str) -> String,
        p: &mut Problems,
    ) {
        use ProviderKind as K;
        let oidc_kinds: &[K] = &[K::Oidc, K::Google, K::Microsoft, K::Gitlab, K::Linkedin];
        let checks: [(&str, bool, &[K]); 11] = [
            ("issuer", self.issuer.is_some(), oidc_kinds),
            (
                "emails_url",
                self.emails_url.is_some(),
                &[K::Github, K::Oauth2],
            ),
            ("hosted_domain", self.hosted_domain.is_some(), &[K::Google]),
            ("tenant", self.tenant.is_some(), &[K::Microsoft]),
            (
                "allowed_tenants",
                self.allowed_tenants.is_some(),
                &[K::Microsoft],
            ),
            ("base_url", self.base_url.is_some(), &[K::Github, K::Gitlab]),
            ("organizations", self.organizations.is_some(), &[K::Github]),
            ("teams", self.teams.is_some(), &[K::Github]),
            (
                "graph_version",
                self.graph_version.is_some(),
                &[K::Facebook],
            ),
            (
                "graph_base_url",
                self.graph_base_url.is_some(),
                &[K::Facebook, K::Microsoft],
            ),
            ("www_base_url", self.www_base_url.is_some(), &[K::Facebook]),
        ];
        for (name, present, kinds) in checks {
            if present && !kinds.contains(&kind) {
                let names: Vec<String> = kinds
                    .iter()
                    .map(|k| format!("{:?}", k).to_lowercase())
                    .collect();
                p.add(
                    &key(name),
                    format_args!(
                        "applies only to kind = {}; remove it or change kind",
                        names.join(" | ")
                    ),
                );
            }
        }
    }

    fn oidc(
        &self,
        kind: ProviderKind,
        key: &dyn Fn(&str) -> String,
        p: &mut Problems,
    ) -> OidcSettings {
        let mut checks = IdTokenChecks::Standard;
        let default_issuer = match kind {
            ProviderKind::Google => {
                if let Some(domain) = &self.hosted_domain {
                    if !is_domain_name(domain) {
                        p.add(
                            &key("hosted_domain"),
                            format_args!("{domain:?} is not a domain name, e.g. \"example.com\""),
                        );
                    }
                    checks = IdTokenChecks::HostedDomain(domain.to_ascii_lowercase());
                }
                Some(GOOGLE_ISSUER.to_owned())
            }
            ProviderKind::Microsoft => {
                let tenant = self.tenant.as_deref().unwrap_or("common");
                if !is_tenant(tenant) {
                    p.add(
                        &key("tenant"),
                        format_args!(
                            "{tenant:?} is not a tenant; use common, organizations, consumers, a tenant id or a domain"
                        ),
                    );
                }
                let allowed = self.allowed_tenants.clone().unwrap_or_default();
                for t in &allowed {
                    if !is_tenant(t) {
                        p.add(
                            &key("allowed_tenants"),
                            format_args!("{t:?} is not a tenant id, e.g. \"9188040d-6c67-4c5b-b112-36a304b66dad\""),
                        );
                    }
                }
                checks = IdTokenChecks::Tenants {
                    allowed: allowed.iter().map(|t| t.to_ascii_lowercase()).collect(),
                };
                Some(microsoft_issuer(tenant))
            }
            ProviderKind::Gitlab => Some(
                p.base_url(&key("base_url"), self.base_url.as_deref(), GITLAB_COM)
                    .as_str()
                    .trim_end_matches('/')
                    .to_owned(),
            ),
            ProviderKind::Linkedin => Some(LINKEDIN_ISSUER.to_owned()),
            _ => None,
        };
        let issuer = match self.issuer.as_deref().or(default_issuer.as_deref()) {
            Some(issuer) => p.url(&key("issuer"), Some(issuer), PLACEHOLDER_URL),
            None => {
                p.add(&key("issuer"), "missing; set the provider's issuer URL (discovery reads <issuer>/.well-known/openid-configuration)");
                Url::parse(PLACEHOLDER_URL).expect("valid")
            }
        };
        let graph_url = (kind == ProviderKind::Microsoft).then(|| {
            let url = p.base_url(
                &key("graph_base_url"),
                self.graph_base_url.as_deref(),
                MICROSOFT_GRAPH,
            );
            // The user's access token goes there.
            if issuer.scheme() == "https" && url.scheme() != "https" {
                p.add(
                    &key("graph_base_url"),
                    "must be https, as the issuer is; the access token would travel in the clear",
                );
            }
            url
        });
        let mut endpoint = |name: &str, value: Option<&str>| {
            let url = p.opt_url(&key(name), value)?;
            // As for a discovered endpoint: with an https issuer, the secret,
            // codes and tokens must not travel in the clear.
            if issuer.scheme() == "https" && url.scheme() != "https" {
                p.add(
                    &key(name),
                    "must be https, as the issuer is; secrets and tokens would travel in the clear",
                );
            }
            Some(url)
        };
        OidcSettings {
            graph_url,
            auth_url: endpoint("auth_url", self.auth_url.as_deref()),
            token_url: endpoint("token_url", self.token_url.as_deref()),
            userinfo_url: endpoint("userinfo_url", self.userinfo_url.as_deref()),
            issuer,
            checks,
        }
    }

    fn github(&self, key: &dyn Fn(&str) -> String, p: &mut Problems) -> OAuth2Settings {
        let base = p.base_url(&key("base_url"), self.base_url.as_deref(), GITHUB_COM);
        let (auth, token, api) = github_urls(&base);
        let organizations = self.organizations.clone().unwrap_or_default();
        let teams = self.teams.clone().unwrap_or_default();
        if organizations
            .iter()
            .any(|o| o.is_empty() || o.contains('/'))
        {
            p.add(
                &key("organizations"),
                "list organization logins, e.g. [\"acme\"]",
            );
        }
        if teams.iter().any(|t| {
            t.split_once('/')
                .is_none_or(|(org, team)| org.is_empty() || team.is_empty() || team.contains('/'))
        }) {
            p.add(
                &key("teams"),
                "write each team as \"org/team-slug\", e.g. \"acme/platform\"",
            );
        }
        let userinfo_url = p.url_or(&key("userinfo_url"), self.userinfo_url.as_deref(), || {
            join_path(&api, "/user")
        });
        OAuth2Settings {
            auth_url: p.url_or(&key("auth_url"), self.auth_url.as_deref(), || auth),
            token_url: p.url_or(&key("token_url"), self.token_url.as_deref(), || token),
            emails_url: Some(
                p.url_or(&key("emails_url"), self.emails_url.as_deref(), || {
                    join_path(&api, "/user/emails")
                }),
            ),
            userinfo_url,
            profile: Profile::Github {
                organizations,
                teams,
            },
        }
    }

    fn facebook(&self, key: &dyn Fn(&str) -> String, p: &mut Problems) -> OAuth2Settings {
        let version = self
            .graph_version
            .as_deref()
            .unwrap_or(FACEBOOK_GRAPH_VERSION);
        if !is_graph_version(version) {
            p.add(
                &key("graph_version"),
                format_args!(
                    "{version:?} is not a Graph API version, e.g. \"{FACEBOOK_GRAPH_VERSION}\""
                ),
            );
        }
        let graph = p.base_url(
            &key("graph_base_url"),
            self.graph_base_url.as_deref(),
            FACEBOOK_GRAPH,
        );
        let www = p.base_url(
            &key("www_base_url"),
            self.www_base_url.as_deref(),
            FACEBOOK_WWW,
        );
        let (auth, token, me) = facebook_urls(&www, &graph, version);
        let mut userinfo_url = p.url_or(&key("userinfo_url"), self.userinfo_url.as_deref(), || me);
        // An override that names no fields would get no email: it keeps the preset's.
        if !userinfo_url.query_pairs().any(|(name, _)| name == "fields") {
            let query = match userinfo_url.query() {
                Some(q) if !q.is_empty() => format!("{q}&{FACEBOOK_FIELDS}"),
                _ => FACEBOOK_FIELDS.to_owned(),
            };
            userinfo_url.set_query(Some(&query));
        }
        OAuth2Settings {
            auth_url: p.url_or(&key("auth_url"), self.auth_url.as_deref(), || auth),
            token_url: p.url_or(&key("token_url"), self.token_url.as_deref(), || token),
            userinfo_url,
            emails_url: None,
            profile: Profile::Facebook,
        }
    }

    fn oauth2(&self, key: &dyn Fn(&str) -> String, p: &mut Problems) -> OAuth2Settings {
        let mut required = |name: &str, value: Option<&str>, what: &str| {
            if value.is_none() {
                p.add(
                    &key(name),
                    format_args!("missing; kind = \"oauth2\" needs the server's {what}"),
                );
            }
            p.url(&key(name), value, PLACEHOLDER_URL)
        };
        let auth_url = required(
            "auth_url",
            self.auth_url.as_deref(),
            "authorization endpoint",
        );
        let token_url = required("token_url", self.token_url.as_deref(), "token endpoint");
        let userinfo_url = required(
            "userinfo_url",
            self.userinfo_url.as_deref(),
            "user profile (userinfo) endpoint",
        );
        let claims = self.claims.clone().unwrap_or_default();
        check_claim_paths(&claims, key, p);
        OAuth2Settings {
            auth_url,
            token_url,
            userinfo_url,
            emails_url: p.opt_url(&key("emails_url"), self.emails_url.as_deref()),
            profile: Profile::Mapped(claims),
        }
    }

    fn scopes(
        &self,
        kind: ProviderKind,
        key: &dyn Fn(&str) -> String,
        p: &mut Problems,
    ) -> Vec<String> {
        let listed = |list: &Option<Vec<String>>| list.as_ref().is_some_and(|l| !l.is_empty());
        let defaults: Vec<&str> = match kind {
            // Membership of organizations and teams needs read:org.
            ProviderKind::Github if listed(&self.organizations) || listed(&self.teams) => {
                vec!["read:user", "user:email", "read:org"]
            }
            ProviderKind::Github => vec!["read:user", "user:email"],
            ProviderKind::Facebook => vec!["email", "public_profile"],
            ProviderKind::Oauth2 => vec![],
            // Entra ID answers a refresh token only for offline_access.
            ProviderKind::Microsoft => vec!["openid", "email", "profile", "offline_access"],
            _ => vec!["openid", "email", "profile"],
        };
        let mut scopes: Vec<String> = match &self.scopes {
            Some(s) => s.clone(),
            None => defaults.into_iter().map(str::to_owned).collect(),
        };
        for extra in &self.extra_scopes {
            if !scopes.contains(extra) {
                scopes.push(extra.clone());
            }
        }
        if scopes
            .iter()
            .any(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            p.add(&key("scopes"), "a scope is one word; list each separately");
        }
        if kind.is_oidc() && !scopes.iter().any(|s| s == "openid") {
            p.add(&key("scopes"), "must include \"openid\"");
        }
        scopes
    }

    fn auth_params(
        &self,
        kind: ProviderKind,
        protocol: &Protocol,
        key: &dyn Fn(&str) -> String,
        p: &mut Problems,
    ) -> BTreeMap<String, String> {
        let mut params = self.auth_params.clone();
        for name in params.keys() {
            if OWNED_AUTH_PARAMS.contains(&name.as_str()) {
                p.add(
                    &key(&format!("auth_params.{name}")),
                    "portcullis sets this parameter itself; remove it (scopes go in scopes / extra_scopes)",
                );
            } else if name.is_empty() {
                p.add(&key("auth_params"), "a parameter name cannot be empty");
            }
        }
        if let Protocol::Oidc(OidcSettings {
            checks: IdTokenChecks::HostedDomain(domain),
            ..
        }) = protocol
        {
            if params.contains_key("hd") {
                p.add(
                    &key("auth_params.hd"),
                    "hosted_domain already sends hd; remove one of them",
                );
            }
            params.insert("hd".to_owned(), domain.clone());
        }
        // Google answers a refresh token only for access_type=offline (and, after
        // the first consent, only with prompt=consent: documented, not defaulted).
        if kind == ProviderKind::Google {
            params
                .entry("access_type".to_owned())
                .or_insert_with(|| "offline".to_owned());
        }
        params
    }

    /// `introspection_url`: as `revocation_url` (it carries the client secret and a token).
    fn introspection_url(
        &self,
        protocol: &Protocol,
        key: &dyn Fn(&str) -> String,
        p: &mut Problems,
    ) -> Option<Url> {
        let https_issuer = matches!(protocol, Protocol::Oidc(o) if o.issuer.scheme() == "https");
        let url = p.opt_url(&key("introspection_url"), self.introspection_url.as_deref())?;
        if https_issuer && url.scheme() != "https" {
            p.add(
                &key("introspection_url"),
                "must be https, as the issuer is; tokens would travel in the clear",
            );
        }
        Some(url)
    }

    /// `end_session_url` and `revocation_url`: absolute URLs; with an https
    /// issuer, https too (the revocation request carries the client secret and
    /// tokens, the end-session URL an id_token).
    fn lifecycle_urls(
        &self,
        protocol: &Protocol,
        key: &dyn Fn(&str) -> String,
        p: &mut Problems,
    ) -> (Option<Url>, Option<Url>) {
        let https_issuer = matches!(protocol, Protocol::Oidc(o) if o.issuer.scheme() == "https");
        let mut checked = |name: &str, value: Option<&str>| {
            let url = p.opt_url(&key(name), value)?;
            if https_issuer && url.scheme() != "https" {
                p.add(
                    &key(name),
                    "must be https, as the issuer is; tokens would travel in the clear",
                );
            }
            Some(url)
        };
        (
            checked("end_session_url", self.end_session_url.as_deref()),
            checked("revocation_url", self.revocation_url.as_deref()),
        )
    }
}

impl Problems {
    /// An optional absolute http(s) URL.
    fn opt_url(&mut self, key: &str, value: Option<&str>) -> Option<Url> {
        value.map(|v| self.url(key, Some(v), PLACEHOLDER_URL))
    }

    /// `value` when given, else the derived default.
    fn url_or(&mut self, key: &str, value: Option<&str>, default: impl FnOnce() -> Url) -> Url {
        match value {
            Some(v) => self.url(key, Some(v), PLACEHOLDER_URL),
            None => default(),
        }
    }

    /// A base URL other URLs are derived from: no query or fragment, no trailing slash.
    fn base_url(&mut self, key: &str, value: Option<&str>, default: &str) -> Url {
        let mut url = self.url(key, value, default);
        if url.query().is_some() || url.fragment().is_some() {
            self.add(key, "must not have a query or fragment");
        }
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&trimmed);
        url
    }
}

/// Each of `[providers.<id>.claims]` must be a path (see `identity::claim_path`).
fn check_claim_paths(claims: &ClaimPaths, key: &dyn Fn(&str) -> String, p: &mut Problems) {
    for (field, path) in [
        ("sub", &claims.sub),
        ("email", &claims.email),
        ("email_verified", &claims.email_verified),
        ("name", &claims.name),
        ("preferred_username", &claims.preferred_username),
        ("picture", &claims.picture),
        ("groups", &claims.groups),
    ] {
        if !crate::identity::claim_path::is_valid(path) {
            p.add(
                &key(&format!("claims.{field}")),
                format_args!("{path:?} is not a path; write field names joined by '.', e.g. \"data.attributes.email\""),
            );
        }
    }
}

/// `<base>` + `path`, keeping any path the base already has (GitHub Enterprise, self-hosted GitLab).
fn join_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{prefix}{path}"));
    url
}

/// GitHub's authorize, token and REST API base URLs for github.com or an Enterprise server.
fn github_urls(base: &Url) -> (Url, Url, Url) {
    let api = if base.host_str() == Some("github.com") && base.path().trim_matches('/').is_empty() {
        Url::parse(GITHUB_API).expect("valid")
    } else {
        join_path(base, "/api/v3")
    };
    (
        join_path(base, "/login/oauth/authorize"),
        join_path(base, "/login/oauth/access_token"),
        api,
    )
}

/// Facebook's login dialog, token endpoint and Graph `/me` (its fields are added
/// by the caller, to an override too), all of one Graph version.
fn facebook_urls(www: &Url, graph: &Url, version: &str) -> (Url, Url, Url) {
    (
        join_path(www, &format!("/{version}/dialog/oauth")),
        join_path(graph, &format!("/{version}/oauth/access_token")),
        join_path(graph, &format!("/{version}/me")),
    )
}

fn microsoft_issuer(tenant: &str) -> String {
    format!("{MICROSOFT_LOGIN}/{tenant}/v2.0")
}

/// common | organizations | consumers, a tenant id (GUID) or a verified domain.
fn is_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 253
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn is_domain_name(d: &str) -> bool {
    d.contains('.') && is_tenant(d) && !d.starts_with('.') && !d.ends_with('.')
}

/// `v<major>.<minor>`, e.g. v21.0.
fn is_graph_version(v: &str) -> bool {
    v.strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        })
}

fn valid_icon(icon: &str) -> bool {
    if icon.chars().any(char::is_control) {
        false
    } else if let Some(rest) = icon.strip_prefix("data:image/") {
        !rest.is_empty()
    } else if icon.starts_with('/') {
        !icon.starts_with("//")
    } else {
        Url::parse(icon).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
    }
}
