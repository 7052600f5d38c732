use super::*;
use crate::config::from_figment;
use figment::Figment;
use figment::providers::{Format, Toml};

const BASE: &str = r#"
[session]
secret = "0123456789abcdef0123456789abcdef"
[providers.idp]
issuer = "https://idp.example"
client_id = "c"
"#;

fn policy(extra: &str) -> Policy {
    let cfg = from_figment(Figment::from(Toml::string(&format!("{BASE}\n{extra}")))).unwrap();
    Policy::new(&cfg).unwrap()
}

fn judged<'p>(p: &'p Policy, method: &Method, path: &str) -> Requirement<'p> {
    p.judge(method, path).expect("a path the readings take")
}

/// A rule's requirement admitting `groups` (leaked: a test's own rule).
fn signed_in(groups: &[String], api: bool) -> Requirement<'static> {
    let who: &'static Who = Box::leak(Box::new(Who {
        groups: groups.to_vec(),
        ..Who::default()
    }));
    Requirement::SignedIn {
        admits: Admits::of(who),
        api,
    }
}

fn user(email: Option<&str>, verified: Option<bool>, groups: &[&str]) -> Identity {
    Identity {
        sub: "u".into(),
        email: email.map(Into::into),
        email_verified: verified,
        name: None,
        preferred_username: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Default::default(),
        added: Default::default(),
    }
}

#[test]
fn first_matching_rule_wins_and_no_match_means_signed_in() {
    let p = policy(
        r#"
[[rules]]
path = "/healthz"
public = true
[[rules]]
path = "/api/"
api = true
[[rules]]
path = "/static/*.css"
public = true
[[rules]]
path = "/admin/**"
groups = ["admins"]
[[rules]]
path = "/hook"
methods = ["POST"]
public = true
"#,
    );
    let get = Method::GET;
    assert_eq!(judged(&p, &get, "/healthz"), Requirement::Public);
    assert_eq!(judged(&p, &get, "/healthz/x"), signed_in(&[], false));
    assert_eq!(judged(&p, &get, "/healthzz"), signed_in(&[], false));
    assert_eq!(judged(&p, &get, "/api/v1"), signed_in(&[], true));
    assert_eq!(judged(&p, &get, "/static/a.css"), Requirement::Public);
    assert_eq!(judged(&p, &get, "/static/a/b.css"), signed_in(&[], false));
    assert_eq!(judged(&p, &get, "/static/a.css.js"), signed_in(&[], false));
    let admins = ["admins".to_string()];
    assert_eq!(judged(&p, &get, "/admin/x/y"), signed_in(&admins, false));
    assert_eq!(judged(&p, &Method::POST, "/hook"), Requirement::Public);
    assert_eq!(judged(&p, &get, "/hook"), signed_in(&[], false));
}

#[test]
fn domain_lists_compare_on_label_boundaries() {
    let allowed = vec!["example.com".to_string(), ".corp.example".to_string()];
    assert!(domain_allowed(&allowed, "a@example.com"));
    assert!(domain_allowed(&allowed, "a@dev.corp.example"));
    for bad in [
        "a@evil-example.com",
        "a@example.com.evil",
        "a@sub.example.com",
        "a@corp.example",
        "a@evilcorp.example",
        "a@example.com@evil",
        "example.com@evil",
        "@example.com",
        "a@",
        "noat",
    ] {
        assert!(!domain_allowed(&allowed, bad), "{bad} must not pass");
    }
}

#[test]
fn global_policy_requires_verified_email_and_allowed_domain_or_address() {
    let p = policy(
        r#"
[access]
allowed_email_domains = ["example.com"]
allowed_emails = ["Guest@Other.org"]
allowed_groups = []
"#,
    );
    assert_eq!(
        p.admits(&user(Some("a@example.com"), Some(true), &[])),
        Ok(())
    );
    assert_eq!(
        p.admits(&user(Some("guest@other.org"), Some(true), &[])),
        Ok(())
    );
    assert_eq!(
        p.admits(&user(Some("a@example.com"), None, &[])),
        Err(Denied::EmailNotVerified)
    );
    assert_eq!(
        p.admits(&user(Some("a@example.com"), Some(false), &[])),
        Err(Denied::EmailNotVerified)
    );
    assert_eq!(
        p.admits(&user(Some("a@evil-example.com"), Some(true), &[])),
        Err(Denied::EmailNotAllowed)
    );
    assert_eq!(
        p.admits(&user(None, None, &[])),
        Err(Denied::EmailNotAllowed)
    );
}

#[test]
fn groups_are_enforced_globally_and_per_rule() {
    let p = policy(
        r#"
[access]
allowed_groups = ["staff", "admins"]
[[rules]]
path = "/admin/"
groups = ["admins"]
"#,
    );
    let staff = user(Some("a@x.org"), Some(true), &["staff"]);
    let admin = user(Some("b@x.org"), Some(true), &["admins"]);
    let nobody = user(Some("c@x.org"), Some(true), &["other"]);
    let admin_rule = judged(&p, &Method::GET, "/admin/panel");
    assert_eq!(
        p.authorize(&staff, &admin_rule),
        Err(Denied::NotAdmittedByRule)
    );
    assert_eq!(p.authorize(&admin, &admin_rule), Ok(()));
    assert_eq!(
        p.authorize(&nobody, &judged(&p, &Method::GET, "/")),
        Err(Denied::NotInAllowedGroup)
    );
    assert_eq!(p.authorize(&staff, &judged(&p, &Method::GET, "/")), Ok(()));
}

#[test]
fn allowed_emails_file_is_read_and_lower_cased() {
    let dir = std::env::temp_dir().join(format!("portcullis-emails-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("emails.txt");
    std::fs::write(&file, "# staff\nAda@Example.org\n\n").unwrap();
    let p = policy(&format!(
        "[access]\nallowed_email_domains = []\nallowed_emails_file = {:?}\n",
        file.display().to_string()
    ));
    assert_eq!(
        p.admits(&user(Some("ada@example.org"), Some(true), &[])),
        Ok(())
    );
    assert_eq!(
        p.admits(&user(Some("bob@example.org"), Some(true), &[])),
        Err(Denied::EmailNotAllowed)
    );
}

#[tokio::test]
async fn allowed_emails_file_is_re_read_when_it_changes() {
    let dir = std::env::temp_dir().join(format!("portcullis-watched-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("emails.txt");
    std::fs::write(&file, "ada@example.org\n").unwrap();
    let p = policy(&format!(
        "[access]\nallowed_email_domains = []\nallowed_emails_file = {:?}\n",
        file.display().to_string()
    ));
    let ada = user(Some("ada@example.org"), Some(true), &[]);
    let grace = user(Some("grace@example.org"), Some(true), &[]);
    let watcher = p
        .watch_emails_file_every(Duration::from_millis(50))
        .expect("a file to watch");
    // Let the watcher note the file's modification time before it changes.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let before = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, "grace@example.org\n").unwrap();
    // However coarse the file system's clock, the modification time moves.
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(before + Duration::from_secs(10))
        .unwrap();
    assert_eq!(p.admits(&grace), Err(Denied::EmailNotAllowed));

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while p.admits(&grace).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the changed file was not re-read"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(p.admits(&ada), Err(Denied::EmailNotAllowed));
    watcher.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_prefix_or_slash_double_star_rule_covers_the_bare_path_too() {
    let p = policy(
        r#"
[[rules]]
path = "/ops/"
groups = ["ops"]
[[rules]]
path = "/admin/**"
groups = ["admins"]
"#,
    );
    let (ops, admins) = (["ops".to_string()], ["admins".to_string()]);
    for (path, groups) in [
        ("/ops/", &ops),
        ("/ops", &ops),
        ("/admin/x", &admins),
        ("/admin", &admins),
    ] {
        assert_eq!(
            judged(&p, &Method::GET, path),
            signed_in(groups, false),
            "{path}"
        );
    }
    // Only the bare path: a longer name is another path.
    assert_eq!(judged(&p, &Method::GET, "/opsx"), signed_in(&[], false));
}

#[test]
fn a_rule_with_capitals_holds_for_every_case_of_its_path_unless_case_sensitive() {
    let rule = "[[rules]]\npath = \"/Admin/\"\ngroups = [\"admins\"]\n";
    let p = policy(rule);
    let admins = ["admins".to_string()];
    for path in ["/Admin/x", "/admin/x", "/ADMIN/x"] {
        assert_eq!(
            judged(&p, &Method::GET, path),
            signed_in(&admins, false),
            "{path}"
        );
    }
    let p = policy(&format!("{rule}[access]\ncase_sensitive_paths = true\n"));
    assert_eq!(
        judged(&p, &Method::GET, "/Admin/x"),
        signed_in(&admins, false)
    );
    assert_eq!(judged(&p, &Method::GET, "/admin/x"), signed_in(&[], false));
}

#[test]
fn globs_match_within_and_across_segments_on_long_paths_too() {
    let p = policy(
        r#"
[[rules]]
path = "/**/x/**/x/**/y"
public = true
[[rules]]
path = "/a/*/c"
public = true
"#,
    );
    let signed_in = signed_in(&[], false);
    // Thousands of candidate splits: answered in one pass per part.
    let long = "/x".repeat(4000);
    assert_eq!(judged(&p, &Method::GET, &long), signed_in);
    assert_eq!(
        judged(&p, &Method::GET, &format!("{long}/y")),
        Requirement::Public
    );
    assert_eq!(judged(&p, &Method::GET, "/a/b/c"), Requirement::Public);
    assert_eq!(judged(&p, &Method::GET, "/a/b/b/c"), signed_in);
    assert_eq!(judged(&p, &Method::GET, "/a/é/c"), Requirement::Public);
}

fn judged_at<'p>(
    p: &'p Policy,
    method: &Method,
    path: &str,
    host: &str,
    preflight: bool,
) -> Requirement<'p> {
    p.judge_request(method, path, Some(host), preflight)
        .expect("a path the readings take")
}

fn with_claims(email: &str, extra: serde_json::Value) -> Identity {
    let mut u = user(Some(email), Some(true), &["staff"]);
    u.extra = extra
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    u
}

#[test]
fn rules_on_emails_domains_and_claims_say_who_and_first_match_wins() {
    let p = policy(
        r#"
[[rules]]
path = "/admin/"
claims = { "realm_access.roles" = ["admin"], "level" = ["3"] }
[[rules]]
path = "/ada"
emails = ["ADA@example.com"]
[[rules]]
path = "/sub/"
domains = [".example.com"]
[[rules]]
path = "/both/"
domains = ["example.com"]
groups = ["admins"]
[[rules]]
path = "/**"
emails = ["nobody@example.com"]
"#,
    );
    let ada = with_claims(
        "Ada@Example.com",
        serde_json::json!({"realm_access.roles": ["user", "admin"], "level": 3}),
    );
    let bob = with_claims(
        "bob@eu.example.com",
        serde_json::json!({"realm_access.roles": "admin", "level": "3"}),
    );
    let eve = with_claims(
        "eve@example.com",
        serde_json::json!({"realm_access.roles": ["user"]}),
    );
    let get = Method::GET;
    let check = |who: &Identity, path: &str| p.authorize(who, &judged(&p, &get, path));
    assert_eq!(check(&ada, "/admin/x"), Ok(()));
    // A string "3" matches the JSON number 3 and the string "3" alike.
    assert_eq!(check(&bob, "/admin/x"), Ok(()));
    // Absent claim (level) and the wrong role: refused.
    assert_eq!(check(&eve, "/admin/x"), Err(Denied::NotAdmittedByRule));
    assert_eq!(check(&ada, "/ada"), Ok(()));
    assert_eq!(check(&bob, "/ada"), Err(Denied::NotAdmittedByRule));
    assert_eq!(check(&bob, "/sub/x"), Ok(()));
    assert_eq!(check(&ada, "/sub/x"), Err(Denied::NotAdmittedByRule));
    // Both conditions: example.com and admins.
    assert_eq!(check(&ada, "/both/x"), Err(Denied::NotAdmittedByRule));
    let mut admin = ada.clone();
    admin.groups = vec!["admins".into()];
    assert_eq!(check(&admin, "/both/x"), Ok(()));
    // An unverified address matches no emails or domains rule, even where
    // the global policy lets it sign in.
    let lax = policy(
        "[access]\nrequire_email_verified = false\n[[rules]]\npath = \"/ada\"\nemails = [\"ada@example.com\"]\n",
    );
    let mut unverified = ada.clone();
    unverified.email_verified = None;
    assert_eq!(lax.authorize(&ada, &judged(&lax, &get, "/ada")), Ok(()));
    assert_eq!(
        lax.authorize(&unverified, &judged(&lax, &get, "/ada")),
        Err(Denied::NotAdmittedByRule)
    );
    // The catch-all rule admits nobody of these.
    assert_eq!(check(&ada, "/other"), Err(Denied::NotAdmittedByRule));
    assert_eq!(
        p.claim_paths().collect::<Vec<_>>(),
        ["level", "realm_access.roles"]
    );
}

#[test]
fn host_rules_match_on_label_boundaries_and_preflights_skip_where_configured() {
    let p = policy(
        r#"
[[rules]]
host = "*.example.com"
path = "/**"
public = true
[[rules]]
host = "api.test"
path = "/v1/"
skip_preflight = true
api = true
"#,
    );
    let get = Method::GET;
    let options = Method::OPTIONS;
    for (host, public) in [
        ("a.example.com", true),
        ("A.EXAMPLE.COM:8443", true),
        ("a.example.com.", true),
        ("example.com", false),
        ("evilexample.com", false),
        ("example.com.evil", false),
    ] {
        let r = judged_at(&p, &get, "/x", host, false);
        assert_eq!(r == Requirement::Public, public, "{host}: {r:?}");
    }
    assert_eq!(judged(&p, &get, "/x"), signed_in(&[], false));
    assert_eq!(
        judged_at(&p, &options, "/v1/items", "api.test", true),
        Requirement::Preflight
    );
    assert_eq!(
        judged_at(&p, &options, "/v1/items", "api.test", false),
        signed_in(&[], true)
    );
    assert_eq!(
        judged_at(&p, &options, "/v2/items", "api.test", true),
        signed_in(&[], false)
    );
    let everywhere = policy("[access]\nskip_auth_preflight = true\n");
    assert_eq!(
        judged_at(&everywhere, &options, "/any", "h", true),
        Requirement::Preflight
    );
}

#[test]
fn a_preflight_needs_options_origin_and_request_method() {
    let mut h = http::HeaderMap::new();
    assert!(!is_preflight(&Method::OPTIONS, &h));
    h.insert("origin", "https://a.example".parse().unwrap());
    assert!(!is_preflight(&Method::OPTIONS, &h));
    h.insert("access-control-request-method", "PUT".parse().unwrap());
    assert!(is_preflight(&Method::OPTIONS, &h));
    assert!(!is_preflight(&Method::GET, &h));
}
