//! Claim paths: where a value sits in a provider's claims (`groups`,
//! `realm_access.roles`, `cognito:groups`, `https://example.com/roles`).
//!
//! A path is read against an object by trying, at each level, the longest
//! key that the rest of the path starts with: the whole rest first (so a key
//! that itself holds dots or colons, like Auth0's namespaced
//! `https://example.com/roles` or Cognito's `cognito:groups`, is found), then
//! each shorter prefix ending before a `.`, descending into that member.
//! A segment read against an array is an index (`teams.0`). Anything else,
//! or a path that runs out of objects, is absent.

use serde_json::{Map, Number, Value};

/// How deep a path may go: each level may try every `.` of the rest, so the
/// work is bounded by the path's length squared, and paths come from the
/// configuration, never from a request.
const MAX_DEPTH: usize = 32;

/// The value at `path` in `claims`, or `None` when any step is missing.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    in_object(claims, path, 0)
}

/// The value at `path` under `value`.
pub fn lookup_value<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    walk(value, path, 0)
}

fn walk<'a>(value: &'a Value, path: &str, depth: usize) -> Option<&'a Value> {
    match value {
        Value::Object(map) => in_object(map, path, depth),
        Value::Array(items) => {
            let (index, rest) = match path.split_once('.') {
                Some((index, rest)) => (index, Some(rest)),
                None => (path, None),
            };
            let item = items.get(index.parse::<usize>().ok()?)?;
            match rest {
                Some(rest) if depth < MAX_DEPTH => walk(item, rest, depth + 1),
                Some(_) => None,
                None => Some(item),
            }
        }
        _ => None,
    }
}

fn in_object<'a>(map: &'a Map<String, Value>, path: &str, depth: usize) -> Option<&'a Value> {
    if let Some(v) = map.get(path) {
        return Some(v);
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    // Longest key first: `a.b.c` tries `a.b` before `a`.
    let mut end = path.len();
    while let Some(dot) = path[..end].rfind('.') {
        if let Some(child) = map.get(&path[..dot])
            && let Some(found) = walk(child, &path[dot + 1..], depth + 1)
        {
            return Some(found);
        }
        end = dot;
    }
    None
}

/// One value a rule's `claims` entry accepts, as written in the
/// configuration (always a string). It matches a claim that is that string
/// exactly (case and all); a boolean whose JSON text it is (`"true"`); a
/// number whose JSON text it is (`"42"` matches `42`, not `42.0`); or an
/// array holding any such item. Objects, `null` and nested arrays never match.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimValue {
    text: Box<str>,
    /// `text` read as a JSON number, once, at start.
    number: Option<Number>,
}

impl ClaimValue {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.into(),
            number: serde_json::from_str::<Number>(text).ok(),
        }
    }

    pub fn is_text(&self, s: &str) -> bool {
        *self.text == *s
    }

    pub fn matches(&self, claim: &Value) -> bool {
        match claim {
            Value::Array(items) => items
                .iter()
                .any(|item| !matches!(item, Value::Array(_)) && self.matches(item)),
            other => self.matches_scalar(other),
        }
    }

    fn matches_scalar(&self, claim: &Value) -> bool {
        match claim {
            Value::String(s) => self.is_text(s),
            Value::Bool(b) => *self.text == *if *b { "true" } else { "false" },
            Value::Number(n) => self.number.as_ref() == Some(n),
            _ => false,
        }
    }
}

/// Whether `path` is one a configuration may name: non-empty segments.
pub fn is_valid(path: &str) -> bool {
    !path.is_empty() && path.split('.').all(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn nested_objects_arrays_and_colon_keys_are_read() {
        let c = claims(json!({
            "realm_access": {"roles": ["admin", "user"]},
            "cognito:groups": ["ops"],
            "teams": [{"slug": "a"}, {"slug": "b"}],
            "https://example.com/roles": ["editor"],
            "a": {"b.c": 1, "b": {"c": 2}},
        }));
        assert_eq!(
            lookup(&c, "realm_access.roles"),
            Some(&json!(["admin", "user"]))
        );
        assert_eq!(lookup(&c, "cognito:groups"), Some(&json!(["ops"])));
        assert_eq!(lookup(&c, "teams.1.slug"), Some(&json!("b")));
        assert_eq!(
            lookup(&c, "https://example.com/roles"),
            Some(&json!(["editor"]))
        );
        // The longest key wins.
        assert_eq!(lookup(&c, "a.b.c"), Some(&json!(1)));
    }

    #[test]
    fn absent_paths_are_none() {
        let c = claims(json!({"realm_access": {"roles": ["admin"]}, "n": 1, "list": [1]}));
        for path in [
            "realm_access.groups",
            "realm_access.roles.x",
            "realm_access.roles.5",
            "missing",
            "n.x",
            "list.-1",
            "list.x",
            "",
            ".",
            "realm_access.",
        ] {
            assert_eq!(lookup(&c, path), None, "{path:?}");
        }
    }

    #[test]
    fn claim_values_compare_strings_exactly_and_scalars_by_json_text() {
        let admin = ClaimValue::new("admin");
        assert!(admin.matches(&json!("admin")));
        assert!(!admin.matches(&json!("Admin")));
        assert!(admin.matches(&json!(["x", "admin"])));
        assert!(!admin.matches(&json!([["admin"]])));
        assert!(!admin.matches(&json!({"admin": true})));
        assert!(!admin.matches(&Value::Null));
        assert!(ClaimValue::new("true").matches(&json!(true)));
        assert!(!ClaimValue::new("true").matches(&json!(false)));
        assert!(ClaimValue::new("42").matches(&json!(42)));
        assert!(ClaimValue::new("42").matches(&json!([1, 42])));
        assert!(!ClaimValue::new("42").matches(&json!(42.0)));
        assert!(ClaimValue::new("-1.5").matches(&json!(-1.5)));
        assert!(!ClaimValue::new("42").matches(&json!("042")));
        assert!(ClaimValue::new("42").matches(&json!("42")));
    }

    #[test]
    fn paths_are_validated() {
        assert!(is_valid("realm_access.roles"));
        assert!(is_valid("cognito:groups"));
        assert!(!is_valid(""));
        assert!(!is_valid("a..b"));
        assert!(!is_valid(".a"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A claim name a provider may send (any text with dots and colons),
        /// and another path to look up.
        fn key_and_path() -> impl Strategy<Value = (String, String)> {
            ("[a-z.:/]{1,12}|\\PC{1,12}", "[a-z.:0-9]{0,16}|\\PC{0,16}")
        }

        /// Any key is found under its own name, whatever it holds, and no
        /// path panics.
        fn check_key((key, other): (String, String)) -> Result<(), TestCaseError> {
            let mut c = claims(json!({"x": {"y": [1, {"z": 2}]}}));
            c.insert(key.clone(), json!("v"));
            prop_assert_eq!(lookup(&c, &key), Some(&json!("v")));
            let _ = lookup(&c, &other);
            let _ = lookup_value(&json!([c.clone(), [c]]), &other);
            Ok(())
        }

        #[test]
        #[ignore = "fuzz target: FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored"]
        fn fuzz_claim_path() {
            crate::fuzz::fuzz("claim_path", key_and_path(), check_key);
        }

        proptest! {
            #[test]
            fn a_key_is_found_by_its_own_name(input in key_and_path()) {
                check_key(input)?;
            }

            /// A nested value is found by its dotted path.
            #[test]
            fn nested_values_are_found(a in "[a-z]{1,6}", b in "[a-z]{1,6}") {
                let c = claims(json!({ a.clone(): { b.clone(): 7 } }));
                let path = format!("{a}.{b}");
                prop_assert_eq!(lookup(&c, &path), Some(&json!(7)));
            }
        }
    }
}
