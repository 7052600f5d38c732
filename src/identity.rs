//! The signed-in user, built from the provider's claims, and how it becomes
//! header values for the upstream (DESIGN §5).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod claim_path;
pub use claim_path::ClaimValue;

/// Who is signed in. Kept small: it travels in the session cookie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Other claims something reads (`[headers]`, the rules' `claims`), by
    /// the path they were named with (`realm_access.roles`), kept so they can
    /// be forwarded and matched without reading a token again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Value>,
    /// What the login hook added (already in `extra` and `groups`), kept so
    /// that an identity rebuilt from the provider at refresh gets it again.
    #[serde(default, skip_serializing_if = "Added::is_empty")]
    pub added: Added,
}

/// Claims and groups the login hook added to an identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Added {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl Added {
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty() && self.groups.is_empty()
    }
}

/// Why claims could not become an identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the provider's claims have no usable `sub`")]
    MissingSubject,
}

impl Identity {
    /// Builds the identity from verified claims. `wanted` lists the claim paths
    /// the `[headers]` maps forward and the rules match, so non-standard ones
    /// are kept in `extra` (see [`claim_path`] for how a path is read).
    pub fn from_claims<'a>(
        claims: &Map<String, Value>,
        wanted: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, IdentityError> {
        let sub = claims
            .get("sub")
            .and_then(scalar_string)
            .filter(|s| !s.is_empty())
            .ok_or(IdentityError::MissingSubject)?;
        let extra = wanted
            .into_iter()
            .filter(|name| !STANDARD_CLAIMS.contains(name))
            .filter_map(|name| Some((name.to_owned(), claim_path::lookup(claims, name)?.clone())))
            .collect();
        Ok(Self {
            sub,
            email: claims.get("email").and_then(scalar_string),
            email_verified: claims.get("email_verified").and_then(|v| match v {
                Value::Bool(b) => Some(*b),
                // Some providers send the boolean as a string.
                Value::String(s) => s.parse().ok(),
                _ => None,
            }),
            name: claims.get("name").and_then(scalar_string),
            preferred_username: claims.get("preferred_username").and_then(scalar_string),
            groups: claims.get("groups").map(string_list).unwrap_or_default(),
            extra,
            added: Added::default(),
        })
    }

    /// This identity, as the provider described it, with `added` (the login
    /// hook's answer) in it: its claims over the provider's of the same name,
    /// its groups after the provider's (each once).
    pub fn with_added(mut self, added: Added) -> Self {
        for (name, value) in &added.claims {
            self.extra.insert(name.clone(), value.clone());
        }
        for group in &added.groups {
            if !self.groups.contains(group) {
                self.groups.push(group.clone());
            }
        }
        self.added = added;
        self
    }

    /// This identity, with what it lacks taken from what the provider said of
    /// `older` (not what the login hook added to it): for claims read from
    /// userinfo alone, which may leave out what only the id_token said.
    pub fn filled_from(mut self, older: &Identity) -> Self {
        self.email = self.email.or_else(|| older.email.clone());
        self.email_verified = self.email_verified.or(older.email_verified);
        self.name = self.name.or_else(|| older.name.clone());
        self.preferred_username = self
            .preferred_username
            .or_else(|| older.preferred_username.clone());
        if self.groups.is_empty() {
            self.groups = (older.groups.iter())
                .filter(|g| !older.added.groups.contains(g))
                .cloned()
                .collect();
        }
        for (name, value) in older
            .extra
            .iter()
            .filter(|(name, _)| !older.added.claims.contains_key(*name))
        {
            self.extra
                .entry(name.clone())
                .or_insert_with(|| value.clone());
        }
        self
    }

    /// Whether the claim at `path` (a standard claim, or one kept in `extra`)
    /// is, or for a list holds, one of `wanted`. An absent claim never matches.
    /// Allocates nothing.
    pub fn claim_matches(&self, path: &str, wanted: &[ClaimValue]) -> bool {
        let text = |s: &Option<String>| {
            s.as_deref()
                .is_some_and(|s| wanted.iter().any(|w| w.is_text(s)))
        };
        match path {
            "sub" => wanted.iter().any(|w| w.is_text(&self.sub)),
            "email" => text(&self.email),
            "name" => text(&self.name),
            "preferred_username" => text(&self.preferred_username),
            "email_verified" => self
                .email_verified
                .is_some_and(|b| wanted.iter().any(|w| w.matches(&Value::Bool(b)))),
            "groups" => self
                .groups
                .iter()
                .any(|g| wanted.iter().any(|w| w.is_text(g))),
            other => self
                .extra
                .get(other)
                .is_some_and(|v| wanted.iter().any(|w| w.matches(v))),
        }
    }

    /// The value of `claim` as one string: lists are joined with `,`.
    pub fn claim(&self, claim: &str) -> Option<String> {
        match claim {
            "sub" => Some(self.sub.clone()),
            "email" => self.email.clone(),
            "email_verified" => self.email_verified.map(|b| b.to_string()),
            "name" => self.name.clone(),
            "preferred_username" => self.preferred_username.clone(),
            "groups" => (!self.groups.is_empty()).then(|| self.groups.join(",")),
            other => {
                let value = self.extra.get(other)?;
                match value {
                    Value::Array(_) => Some(string_list(value).join(",")),
                    v => scalar_string(v),
                }
            }
        }
    }

    /// The claim as a header value. Printable ASCII passes as it is; anything else
    /// (non-ASCII, control characters) is sent as an RFC 2047 encoded word,
    /// `=?UTF-8?B?<base64 of the UTF-8 bytes>?=`, so it is never sent raw and never
    /// dropped.
    pub fn header_value(&self, claim: &str) -> Option<http::HeaderValue> {
        let value = self.claim(claim)?;
        encode_header_value(&value)
    }
}

/// Printable ASCII as it is; anything else as an RFC 2047 encoded word. Also
/// encoded: a value with a space at either end, which HTTP parsers trim (RFC
/// 9110 §5.5), and a value holding `=?` anywhere, which RFC 2047 decoders may
/// read as an encoded word (most find them anywhere in a value, not only at
/// its start), so an encoded word is always portcullis' own.
pub fn encode_header_value(value: &str) -> Option<http::HeaderValue> {
    use base64::Engine;
    let plain = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !value.contains("=?");
    if plain {
        return http::HeaderValue::from_str(value).ok();
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
    http::HeaderValue::from_str(&format!("=?UTF-8?B?{encoded}?=")).ok()
}

const STANDARD_CLAIMS: [&str; 6] = [
    "sub",
    "email",
    "email_verified",
    "name",
    "preferred_username",
    "groups",
];

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A claim that should be a list of strings: an array, or one string alone.
fn string_list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(scalar_string).collect(),
        other => scalar_string(other).into_iter().collect(),
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn builds_identity_from_standard_and_wanted_claims() {
        let c = claims(
            json!({"sub": "u1", "email": "a@x.org", "email_verified": "true",
            "groups": ["a", "b"], "department": "R&D", "ignored": 1}),
        );
        let id = Identity::from_claims(&c, ["sub", "department"]).unwrap();
        assert_eq!(id.email_verified, Some(true));
        assert_eq!(id.claim("groups").as_deref(), Some("a,b"));
        assert_eq!(id.claim("department").as_deref(), Some("R&D"));
        assert!(!id.extra.contains_key("ignored"));
    }

    #[test]
    fn wanted_claim_paths_are_kept_by_path_and_matched_without_the_token() {
        let c = claims(json!({"sub": "u1", "realm_access": {"roles": ["admin"]},
            "cognito:groups": ["ops"], "level": 3, "groups": ["g"]}));
        let id = Identity::from_claims(
            &c,
            ["realm_access.roles", "cognito:groups", "level", "absent.x"],
        )
        .unwrap();
        assert_eq!(id.extra["realm_access.roles"], json!(["admin"]));
        assert!(!id.extra.contains_key("realm_access"));
        assert!(!id.extra.contains_key("absent.x"));
        let one = |v: &str| [ClaimValue::new(v)];
        assert!(id.claim_matches("realm_access.roles", &one("admin")));
        assert!(id.claim_matches("cognito:groups", &one("ops")));
        assert!(id.claim_matches("level", &one("3")));
        assert!(id.claim_matches("groups", &one("g")));
        assert!(id.claim_matches("sub", &one("u1")));
        assert!(!id.claim_matches("absent.x", &one("admin")));
        assert!(!id.claim_matches("realm_access.roles", &one("Admin")));
        assert_eq!(id.claim("realm_access.roles").as_deref(), Some("admin"));
    }

    #[test]
    fn hook_additions_are_forwarded_matched_and_not_taken_for_the_providers_at_refresh() {
        let c = claims(json!({"sub": "u1", "groups": ["a", "b"], "team": "red", "dept": "x"}));
        let added = Added {
            claims: BTreeMap::from([
                ("user_id".to_owned(), json!(42)),
                ("team".to_owned(), json!("blue")),
            ]),
            groups: vec!["a".into(), "from-hook".into()],
        };
        let id = Identity::from_claims(&c, ["user_id", "team", "dept"])
            .unwrap()
            .with_added(added.clone());
        assert_eq!(id.claim("user_id").as_deref(), Some("42"));
        assert_eq!(
            id.claim("team").as_deref(),
            Some("blue"),
            "over the provider's"
        );
        assert_eq!(id.groups, ["a", "b", "from-hook"], "each once");
        assert!(id.claim_matches("groups", &[ClaimValue::new("from-hook")]));
        // Userinfo alone at refresh: what the provider said before fills in,
        // what the hook added does not pass for the provider's (a group both
        // named counts as the hook's: the safe side when the hook, asked
        // again, no longer grants it).
        let refreshed = Identity::from_claims(&claims(json!({"sub": "u1"})), ["team", "dept"])
            .unwrap()
            .filled_from(&id);
        assert_eq!(refreshed.groups, ["b"]);
        assert_eq!(refreshed.extra.get("dept"), Some(&json!("x")));
        assert!(!refreshed.extra.contains_key("user_id"));
        assert!(!refreshed.extra.contains_key("team"));
        let again = refreshed.with_added(added);
        assert_eq!(again.claim("user_id").as_deref(), Some("42"));
        assert_eq!(again.groups, ["b", "a", "from-hook"]);
    }

    #[test]
    fn numeric_sub_is_accepted_and_missing_sub_refused() {
        assert_eq!(
            Identity::from_claims(&claims(json!({"sub": 42})), [])
                .unwrap()
                .sub,
            "42"
        );
        assert!(Identity::from_claims(&claims(json!({"sub": ""})), []).is_err());
        assert!(Identity::from_claims(&claims(json!({"email": "a@b"})), []).is_err());
    }

    #[test]
    fn non_ascii_and_control_characters_are_encoded_not_dropped() {
        assert_eq!(encode_header_value("Ada Lovelace").unwrap(), "Ada Lovelace");
        assert_eq!(encode_header_value("Zoë").unwrap(), "=?UTF-8?B?Wm/Dqw==?=");
        assert_eq!(
            encode_header_value("a\r\nX-Evil: 1").unwrap(),
            "=?UTF-8?B?YQ0KWC1FdmlsOiAx?="
        );
        // A value that merely looks encoded is encoded too, so it cannot be forged.
        assert!(
            encode_header_value("=?UTF-8?B?x?=")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("=?UTF-8?B?PT9")
        );
    }

    /// Found by the header value property: an HTTP parser trims the spaces,
    /// so the upstream read `admin` for the claim ` admin `.
    #[test]
    fn a_value_with_a_space_at_either_end_is_encoded() {
        assert_eq!(encode_header_value(" ").unwrap(), "=?UTF-8?B?IA==?=");
        assert_eq!(
            encode_header_value(" admin ").unwrap(),
            "=?UTF-8?B?IGFkbWluIA==?="
        );
        assert_eq!(encode_header_value("Ada Lovelace").unwrap(), "Ada Lovelace");
    }

    /// Found by the header value property: RFC 2047 decoders find encoded
    /// words anywhere in a value, so `x=?UTF-8?B?YWRtaW4=?=` read as `xadmin`.
    #[test]
    fn a_value_holding_an_encoded_word_anywhere_is_encoded() {
        assert_eq!(
            encode_header_value("x=?UTF-8?B?YWRtaW4=?=").unwrap(),
            "=?UTF-8?B?eD0/VVRGLTg/Qj9ZV1J0YVc0PT89?="
        );
        assert_eq!(
            encode_header_value("Ada =?").unwrap(),
            "=?UTF-8?B?QWRhID0/?="
        );
    }
}
