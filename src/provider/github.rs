//! GitHub (OAuth 2.0, not OpenID Connect): identity from `GET /user`, the address
//! from `/user/emails`, and — when sign-in is restricted to organizations or
//! teams — membership from `/user/orgs` and `/user/teams`, exposed as groups
//! `org` and `org/team-slug`. The three lists sit next to `/user` on github.com
//! (`https://api.github.com`) and on Enterprise servers (`<base>/api/v3`).

use serde_json::{Map, Value};
use url::Url;

use super::ProviderError;
use super::oauth2::{Api, put, string_of};
use crate::config::OAuth2Settings;

pub(super) async fn profile(
    api: &Api<'_>,
    settings: &OAuth2Settings,
    organizations: &[String],
    teams: &[String],
) -> Result<Map<String, Value>, ProviderError> {
    let user = api.get(&settings.userinfo_url).await?;
    let mut claims = user_claims(&user)?;
    let emails = match &settings.emails_url {
        Some(url) => Some(api.get(url).await?),
        None => None,
    };
    let user_email = user.get("email").and_then(Value::as_str);
    if let Some((email, verified)) = choose_email(user_email, emails.as_ref()) {
        claims.insert("email".into(), email.into());
        claims.insert("email_verified".into(), verified.into());
    }
    if !organizations.is_empty() || !teams.is_empty() {
        let orgs = api
            .get(&beside_user(&settings.userinfo_url, "orgs"))
            .await?;
        let user_teams = api
            .get(&beside_user(&settings.userinfo_url, "teams"))
            .await?;
        let groups = groups(&orgs, &user_teams);
        if !is_member(&groups, organizations, teams) {
            return Err(ProviderError::NotPermitted(
                "Your GitHub account is not a member of an organization or team allowed here."
                    .into(),
            ));
        }
        claims.insert("groups".into(), groups.into());
    }
    Ok(claims)
}

/// `/user` → standard claims; `sub` is the numeric user id, which never changes
/// (the login can be renamed).
fn user_claims(user: &Value) -> Result<Map<String, Value>, ProviderError> {
    let sub = string_of(user.get("id"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ProviderError::InvalidProfile("GitHub's /user has no id".into()))?;
    let text = |name: &str| user.get(name).and_then(Value::as_str).map(str::to_owned);
    let mut claims = Map::new();
    claims.insert("sub".into(), sub.into());
    put(&mut claims, "preferred_username", text("login"));
    put(&mut claims, "name", text("name"));
    put(&mut claims, "picture", text("avatar_url"));
    Ok(claims)
}

/// The public address of `/user` when it has one, verified only if `/user/emails`
/// lists it as verified; else the primary verified address of `/user/emails`.
fn choose_email(user_email: Option<&str>, emails: Option<&Value>) -> Option<(String, bool)> {
    let listed = emails
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    match user_email.filter(|e| !e.is_empty()) {
        Some(email) => {
            let verified = listed.iter().any(|e| {
                e.get("email")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a.eq_ignore_ascii_case(email))
                    && e.get("verified").and_then(Value::as_bool) == Some(true)
            });
            Some((email.to_owned(), verified))
        }
        None => emails
            .and_then(super::oauth2::primary_verified_email)
            .map(|e| (e, true)),
    }
}

/// Organization logins, then `org/team-slug` for each team.
fn groups<'a>(orgs: &'a Value, teams: &'a Value) -> Vec<String> {
    let items = |v: &'a Value| v.as_array().into_iter().flatten();
    let org_logins = items(orgs).filter_map(|o| o.get("login")?.as_str().map(str::to_owned));
    let team_names = items(teams).filter_map(|t| {
        let org = t.get("organization")?.get("login")?.as_str()?;
        let slug = t.get("slug")?.as_str()?;
        Some(format!("{org}/{slug}"))
    });
    org_logins.chain(team_names).collect()
}

/// A member of any listed organization or any listed team. GitHub logins and
/// slugs are case-insensitive.
fn is_member(groups: &[String], organizations: &[String], teams: &[String]) -> bool {
    groups.iter().any(|g| {
        organizations
            .iter()
            .chain(teams)
            .any(|allowed| allowed.eq_ignore_ascii_case(g))
    })
}

/// `<userinfo_url>/<list>?per_page=100` (`/user/orgs`, `/user/teams`).
fn beside_user(user_url: &Url, list: &str) -> Url {
    let mut url = user_url.clone();
    let path = format!("{}/{list}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(Some("per_page=100"));
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numeric_id_is_the_subject_and_login_the_username() {
        let user = json!({"login": "octocat", "id": 583231, "name": "The Octocat",
            "avatar_url": "https://avatars.githubusercontent.com/u/583231", "email": null});
        let c = user_claims(&user).unwrap();
        assert_eq!(c["sub"], "583231");
        assert_eq!(c["preferred_username"], "octocat");
        assert_eq!(c["name"], "The Octocat");
        assert_eq!(
            c["picture"],
            "https://avatars.githubusercontent.com/u/583231"
        );
        assert!(!c.contains_key("email"));
        assert!(matches!(
            user_claims(&json!({"login": "x"})),
            Err(ProviderError::InvalidProfile(_))
        ));
    }

    #[test]
    fn email_from_user_is_verified_only_when_emails_says_so() {
        let emails = json!([
            {"email": "public@example.com", "primary": false, "verified": false},
            {"email": "main@example.com", "primary": true, "verified": true},
        ]);
        assert_eq!(
            choose_email(Some("public@example.com"), Some(&emails)),
            Some(("public@example.com".into(), false))
        );
        assert_eq!(
            choose_email(Some("Main@example.com"), Some(&emails)),
            Some(("Main@example.com".into(), true))
        );
        assert_eq!(
            choose_email(None, Some(&emails)),
            Some(("main@example.com".into(), true))
        );
        assert_eq!(choose_email(Some(""), None), None);
    }

    #[test]
    fn groups_are_orgs_and_org_slash_team() {
        let orgs = json!([{"login": "acme", "id": 1}, {"login": "widgets", "id": 2}]);
        let teams = json!([{"slug": "platform", "name": "Platform", "organization": {"login": "acme"}},
            {"slug": "broken"}]);
        let g = groups(&orgs, &teams);
        assert_eq!(g, ["acme", "widgets", "acme/platform"]);
        assert!(is_member(&g, &["ACME".into()], &[]));
        assert!(is_member(&g, &[], &["acme/Platform".into()]));
        assert!(!is_member(&g, &["other".into()], &["acme/security".into()]));
        assert!(groups(&json!({"message": "x"}), &json!(null)).is_empty());
    }

    #[test]
    fn orgs_and_teams_sit_beside_user() {
        let user = Url::parse("https://ghe.example.com/api/v3/user").unwrap();
        assert_eq!(
            beside_user(&user, "orgs").as_str(),
            "https://ghe.example.com/api/v3/user/orgs?per_page=100"
        );
    }
}
