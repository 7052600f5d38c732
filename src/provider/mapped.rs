//! Any plain OAuth 2.0 server: its userinfo JSON mapped onto the standard claims
//! by dotted paths (`claims.email = "data.attributes.email"`), plus the address
//! from an optional GitHub-style emails list when userinfo has none.

use serde_json::{Map, Value};

use super::ProviderError;
use super::oauth2::{Api, primary_verified_email, string_of};
use crate::config::{ClaimPaths, OAuth2Settings};
use crate::identity::claim_path::lookup_value as lookup;

/// The claims `map_claims` sets; `remap` replaces each of them.
const MAPPED: [&str; 7] = [
    "sub",
    "email",
    "email_verified",
    "name",
    "preferred_username",
    "picture",
    "groups",
];

pub(super) async fn profile(
    api: &Api<'_>,
    settings: &OAuth2Settings,
    paths: &ClaimPaths,
) -> Result<Map<String, Value>, ProviderError> {
    let userinfo = api.get(&settings.userinfo_url).await?;
    let mut claims = map_claims(&userinfo, paths)?;
    if let (false, Some(url)) = (claims.contains_key("email"), &settings.emails_url)
        && let Some(email) = primary_verified_email(&api.get(url).await?)
    {
        claims.insert("email".into(), email.into());
        claims.insert("email_verified".into(), true.into());
    }
    Ok(claims)
}

/// The standard claims read from `userinfo`. `sub` is required; numbers are
/// accepted wherever a string is (numeric ids), stringified.
fn map_claims(userinfo: &Value, paths: &ClaimPaths) -> Result<Map<String, Value>, ProviderError> {
    let sub = string_of(lookup(userinfo, &paths.sub))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ProviderError::InvalidProfile(format!(
                "userinfo has no string or number at {:?} (claims.sub)",
                paths.sub
            ))
        })?;
    let mut claims = Map::new();
    claims.insert("sub".into(), sub.into());
    for (name, path) in [
        ("email", &paths.email),
        ("name", &paths.name),
        ("preferred_username", &paths.preferred_username),
        ("picture", &paths.picture),
    ] {
        if let Some(value) = string_of(lookup(userinfo, path)) {
            claims.insert(name.into(), value.into());
        }
    }
    let verified = match lookup(userinfo, &paths.email_verified) {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    if let Some(verified) = verified {
        claims.insert("email_verified".into(), verified.into());
    }
    let groups: Option<Vec<String>> = match lookup(userinfo, &paths.groups) {
        Some(Value::Array(items)) => {
            Some(items.iter().filter_map(|i| string_of(Some(i))).collect())
        }
        other => string_of(other).map(|g| vec![g]),
    };
    if let Some(groups) = groups {
        claims.insert("groups".into(), groups.into());
    }
    Ok(claims)
}

/// `[providers.<id>.claims]` for any other kind: the standard claims read
/// again, by the configured paths, from the claims the provider gave (for
/// OpenID Connect, the id_token's overlaid by userinfo's). A standard claim
/// whose path finds nothing is absent, never left as the provider named it:
/// `groups = "roles"` means the groups are the roles. The other claims stay.
pub(super) fn remap(
    claims: &mut Map<String, Value>,
    paths: &ClaimPaths,
) -> Result<(), ProviderError> {
    let root = Value::Object(std::mem::take(claims));
    let mapped = map_claims(&root, paths);
    let Value::Object(mut all) = root else {
        unreachable!("built as an object above")
    };
    let mapped = mapped?;
    for name in MAPPED {
        all.remove(name);
    }
    all.extend(mapped);
    *claims = all;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn remap_reads_groups_from_roles_nested_and_colon_paths() {
        let base = json!({"sub": "u1", "email": "a@x.org", "groups": ["stale"],
            "roles": ["r1"], "realm_access": {"roles": ["admin"]}, "cognito:groups": ["ops"]});
        for (path, want) in [
            ("roles", json!(["r1"])),
            ("realm_access.roles", json!(["admin"])),
            ("cognito:groups", json!(["ops"])),
        ] {
            let mut claims = base.as_object().unwrap().clone();
            let paths = ClaimPaths {
                groups: path.into(),
                ..ClaimPaths::default()
            };
            remap(&mut claims, &paths).unwrap();
            assert_eq!(claims["groups"], want, "{path}");
            assert_eq!(claims["email"], "a@x.org");
            assert_eq!(claims["realm_access"], json!({"roles": ["admin"]}));
        }
        // A path that finds nothing leaves no groups, not the provider's own.
        let mut claims = base.as_object().unwrap().clone();
        let paths = ClaimPaths {
            groups: "nowhere".into(),
            ..ClaimPaths::default()
        };
        remap(&mut claims, &paths).unwrap();
        assert!(!claims.contains_key("groups"));
    }

    #[test]
    fn default_paths_read_standard_names() {
        let c = map_claims(
            &json!({"sub": "u1", "email": "a@x.org", "email_verified": true, "groups": ["a"]}),
            &ClaimPaths::default(),
        )
        .unwrap();
        assert_eq!(c["sub"], "u1");
        assert_eq!(c["email_verified"], true);
        assert_eq!(c["groups"], json!(["a"]));
    }

    #[test]
    fn dotted_paths_walk_nested_objects_and_numbers_become_ids() {
        let userinfo = json!({
            "data": {"id": 4711, "attributes": {"email": "ada@example.com", "confirmed": "true",
                "full_name": "Ada", "handle": "ada", "avatar": {"url": "https://x/a.png"}},
                "memberships": [{"team": 12}, {"team": "ops"}]},
            "teams": [12, "ops", {"x": 1}]
        });
        let paths = ClaimPaths {
            sub: "data.id".into(),
            email: "data.attributes.email".into(),
            email_verified: "data.attributes.confirmed".into(),
            name: "data.attributes.full_name".into(),
            preferred_username: "data.attributes.handle".into(),
            picture: "data.attributes.avatar.url".into(),
            groups: "teams".into(),
        };
        let c = map_claims(&userinfo, &paths).unwrap();
        assert_eq!(c["sub"], "4711");
        assert_eq!(c["email"], "ada@example.com");
        assert_eq!(c["email_verified"], true);
        assert_eq!(c["name"], "Ada");
        assert_eq!(c["preferred_username"], "ada");
        assert_eq!(c["picture"], "https://x/a.png");
        assert_eq!(c["groups"], json!(["12", "ops"]));
        assert_eq!(
            lookup(&userinfo, "data.memberships.1.team"),
            Some(&json!("ops"))
        );
    }

    #[test]
    fn a_missing_or_unusable_sub_is_refused() {
        let paths = ClaimPaths {
            sub: "user.id".into(),
            ..ClaimPaths::default()
        };
        for userinfo in [
            json!({}),
            json!({"user": {"id": ""}}),
            json!({"user": {"id": {"n": 1}}}),
            json!({"user": "x"}),
        ] {
            assert!(matches!(
                map_claims(&userinfo, &paths),
                Err(ProviderError::InvalidProfile(_))
            ));
        }
    }

    #[test]
    fn a_single_group_string_is_a_list_of_one() {
        let c = map_claims(
            &json!({"sub": 1, "groups": "admins"}),
            &ClaimPaths::default(),
        )
        .unwrap();
        assert_eq!(c["groups"], json!(["admins"]));
    }
}
