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

fn user(email: Option<&str>, verified: Option<bool>, groups: &[&str]) -> Identity {
    Identity {
        sub: "u".into(),
        email: email.map(Into::into),
        email_verified: verified,
        name: None,
        preferred_username: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Default::default(),
    }
}

#[test]
fn normalises_paths_the_way_the_upstream_resolves_them() {
    for (raw, want) in [
        ("/", "/"),
        ("", "/"),
        ("/a/b", "/a/b"),
        ("/a//b", "/a/b"),
        ("//a", "/a"),
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/../../etc", "/etc"),
        ("/public/%2e%2e/admin", "/admin"),
        ("/public/..%2fadmin", "/admin"),
        ("/a%2Fb", "/a/b"),
        ("/a/", "/a/"),
        ("/a/.", "/a/"),
        ("/a/b/..", "/a/"),
        ("/x%23y", "/x#y"),
        // Decoded once only: a double-encoded dot segment stays literal.
        ("/public/%252e%252e/admin", "/public/%2e%2e/admin"),
    ] {
        assert_eq!(normalize_path(raw), want, "normalize_path({raw:?})");
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
    assert_eq!(p.requirement(&get, "/healthz"), Requirement::Public);
    assert_eq!(
        p.requirement(&get, "/healthz/x"),
        Requirement::SignedIn {
            groups: &[],
            api: false
        }
    );
    assert_eq!(
        p.requirement(&get, "/healthzz"),
        Requirement::SignedIn {
            groups: &[],
            api: false
        }
    );
    assert_eq!(
        p.requirement(&get, "/api/v1"),
        Requirement::SignedIn {
            groups: &[],
            api: true
        }
    );
    assert_eq!(p.requirement(&get, "/static/a.css"), Requirement::Public);
    assert_eq!(
        p.requirement(&get, "/static/a/b.css"),
        Requirement::SignedIn {
            groups: &[],
            api: false
        }
    );
    assert_eq!(
        p.requirement(&get, "/static/a.css.js"),
        Requirement::SignedIn {
            groups: &[],
            api: false
        }
    );
    let admins = ["admins".to_string()];
    assert_eq!(
        p.requirement(&get, "/admin/x/y"),
        Requirement::SignedIn {
            groups: &admins,
            api: false
        }
    );
    assert_eq!(p.requirement(&Method::POST, "/hook"), Requirement::Public);
    assert_eq!(
        p.requirement(&get, "/hook"),
        Requirement::SignedIn {
            groups: &[],
            api: false
        }
    );
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
    let admin_rule = p.requirement(&Method::GET, "/admin/panel");
    assert_eq!(p.authorize(&staff, admin_rule), Err(Denied::NotInRuleGroup));
    assert_eq!(p.authorize(&admin, admin_rule), Ok(()));
    assert_eq!(
        p.authorize(&nobody, p.requirement(&Method::GET, "/")),
        Err(Denied::NotInAllowedGroup)
    );
    assert_eq!(
        p.authorize(&staff, p.requirement(&Method::GET, "/")),
        Ok(())
    );
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

#[test]
fn a_path_with_dot_segments_is_ambiguous_and_any_other_is_normalised() {
    for raw in [
        "/admin/../public/x",
        "/a/./b",
        "/admin/%2e%2e/public",
        "/admin%2f..%2fpublic",
        "/a/%2E",
        "/..",
    ] {
        assert_eq!(unambiguous_path(raw), None, "{raw}");
    }
    assert_eq!(unambiguous_path("/a//b/%7Ec/").as_deref(), Some("/a/b/~c/"));
    assert_eq!(unambiguous_path("/a/.b/..c").as_deref(), Some("/a/.b/..c"));
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
            p.requirement(&Method::GET, path),
            Requirement::SignedIn { groups, api: false },
            "{path}"
        );
    }
    // Only the bare path: a longer name is another path.
    assert_eq!(
        p.requirement(&Method::GET, "/opsx"),
        Requirement::SignedIn {
            groups: &[],
            api: false
        }
    );
}

#[test]
fn path_parameters_are_cut_off_as_servlet_containers_do() {
    assert_eq!(normalize_path("/admin;jsessionid=1/panel"), "/admin/panel");
    assert_eq!(unambiguous_path("/public/..;/admin"), None);
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
    let signed_in = Requirement::SignedIn {
        groups: &[],
        api: false,
    };
    // Thousands of candidate splits: answered in one pass per part.
    let long = "/x".repeat(4000);
    assert_eq!(p.requirement(&Method::GET, &long), signed_in);
    assert_eq!(
        p.requirement(&Method::GET, &format!("{long}/y")),
        Requirement::Public
    );
    assert_eq!(p.requirement(&Method::GET, "/a/b/c"), Requirement::Public);
    assert_eq!(p.requirement(&Method::GET, "/a/b/b/c"), signed_in);
    assert_eq!(p.requirement(&Method::GET, "/a/é/c"), Requirement::Public);
}

/// The shortcut for paths that are already normal must agree with the long
/// way on every path it takes: all paths of up to six characters over an
/// alphabet holding each character that matters.
#[test]
fn paths_taken_as_already_normal_are_what_resolving_makes_of_them() {
    const ALPHABET: [char; 7] = ['/', 'a', '.', ';', '%', '2', 'e'];
    let mut taken = 0;
    for len in 1..=6u32 {
        for mut n in 0..ALPHABET.len().pow(len) {
            let raw: String = (0..len)
                .map(|_| {
                    let c = ALPHABET[n % ALPHABET.len()];
                    n /= ALPHABET.len();
                    c
                })
                .collect();
            if super::is_normal(&raw) {
                taken += 1;
                assert_eq!(super::resolve(&raw), (raw.clone(), false), "{raw:?}");
            }
        }
    }
    // "/", "/a", "/a/", "/a.e/", "/..a" and the like: the shortcut is taken.
    assert!(taken > 1000, "only {taken} paths taken as normal");
}
