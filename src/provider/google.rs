//! Google: with `hosted_domain`, only accounts of that Google Workspace domain. The
//! `hd` authorization parameter merely preselects the account; the verified
//! id_token's `hd` claim decides.

use serde_json::{Map, Value};

use super::ProviderError;

pub(super) fn check_hosted_domain(
    claims: &Map<String, Value>,
    domain: &str,
) -> Result<(), ProviderError> {
    match claims.get("hd").and_then(Value::as_str) {
        Some(hd) if hd.eq_ignore_ascii_case(domain) => Ok(()),
        _ => Err(ProviderError::NotPermitted(format!(
            "This Google account is not in the allowed Google Workspace domain ({domain})."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_hosted_domain_is_admitted() {
        let claims = |v: Value| v.as_object().cloned().unwrap();
        assert!(check_hosted_domain(&claims(json!({"hd": "Example.com"})), "example.com").is_ok());
        for c in [
            json!({"hd": "evil.com"}),
            json!({}),
            json!({"hd": ["example.com"]}),
        ] {
            assert!(matches!(
                check_hosted_domain(&claims(c), "example.com"),
                Err(ProviderError::NotPermitted(_))
            ));
        }
    }
}
