//! Microsoft Entra ID (v2.0 endpoints). With tenant `common` or `organizations` the
//! discovery document's issuer is a template, `https://login.microsoftonline.com/{tenantid}/v2.0`:
//! each id_token names the user's tenant in `tid`, and its `iss` must be the
//! template filled with that `tid`. `allowed_tenants` optionally restricts `tid`.

use serde_json::{Map, Value};
use url::Url;

use super::ProviderError;
use super::http::{HttpError, HttpFailure, ProviderHttp, json_object};

const TENANT_PLACEHOLDER: &str = "{tenantid}";

pub(super) fn is_template(issuer: &str) -> bool {
    issuer.contains(TENANT_PLACEHOLDER)
}

/// RFC 9207 `iss` before the token is known: the template filled with some tenant id.
pub(super) fn matches_template(template: &str, iss: &str) -> bool {
    let Some((prefix, suffix)) = template.split_once(TENANT_PLACEHOLDER) else {
        return template == iss;
    };
    iss.strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .is_some_and(is_tenant_id)
}

/// Discovery for `.../common/v2.0` publishes `.../{tenantid}/v2.0`, and discovery
/// for a tenant domain publishes the tenant's id: the configured issuer with one
/// path segment (the tenant) replaced. Scheme, host and every other segment must match.
pub(super) fn is_published_issuer_for(configured: &str, published: &str) -> bool {
    let ours: Vec<&str> = configured.trim_end_matches('/').split('/').collect();
    let theirs: Vec<&str> = published.trim_end_matches('/').split('/').collect();
    if ours.len() != theirs.len() {
        return false;
    }
    let differing: Vec<usize> = (0..ours.len()).filter(|&i| ours[i] != theirs[i]).collect();
    match differing.as_slice() {
        [] => true,
        // 0 is the scheme, 1 empty, 2 the host: only a path segment may differ.
        [i] => *i > 2 && (theirs[*i] == TENANT_PLACEHOLDER || is_tenant_id(theirs[*i])),
        _ => false,
    }
}

/// On verified claims: under a template, `tid` must exist and `iss` must be the
/// template filled with it; with `allowed` non-empty, `tid` must be listed.
pub(super) fn check_tenant(
    issuer: &str,
    claims: &Map<String, Value>,
    allowed: &[String],
) -> Result<(), ProviderError> {
    let tid = claims.get("tid").and_then(Value::as_str);
    if is_template(issuer) {
        let tid = tid.filter(|t| is_tenant_id(t)).ok_or_else(|| {
            ProviderError::InvalidIdToken("no usable tid claim to fill the issuer template".into())
        })?;
        let expected = issuer.replacen(TENANT_PLACEHOLDER, tid, 1);
        if claims.get("iss").and_then(Value::as_str) != Some(expected.as_str()) {
            return Err(ProviderError::InvalidIdToken(
                "issuer does not match the tenant (tid) the token names".into(),
            ));
        }
    }
    if !allowed.is_empty()
        && !tid.is_some_and(|t| allowed.iter().any(|a| a.eq_ignore_ascii_case(t)))
    {
        return Err(ProviderError::NotPermitted(
            "Your Microsoft organization (tenant) is not allowed to sign in here.".into(),
        ));
    }
    Ok(())
}

/// Entra ID sends no `email_verified`, and its `email` is an attribute a tenant
/// admin can set to anything (the "nOAuth" weakness). Only the optional claim
/// `xms_edov` ("email domain owner verified") says the address is the user's, so
/// it alone decides `email_verified` when the provider did not send one.
pub(super) fn email_verified_from_edov(claims: &mut Map<String, Value>) {
    if claims.contains_key("email_verified") {
        return;
    }
    let edov = match claims.get("xms_edov") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    };
    claims.insert("email_verified".into(), Value::Bool(edov));
}

/// A tenant id is a GUID: letters, digits and '-' only, so it cannot reshape a URL.
fn is_tenant_id(t: &str) -> bool {
    !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Whether Entra left `groups` out for a groups overage: more than 200 groups
/// for a JWT, so the id_token names a claim source instead (`_claim_names`:
/// `{"groups": "src1"}`, `_claim_sources`: `{"src1": {"endpoint": ...}}`).
/// https://learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference
/// (the `groups` and `_claim_names` / `_claim_sources` rows).
pub(super) fn has_groups_overage(claims: &Map<String, Value>) -> bool {
    !claims.contains_key("groups")
        && claims
            .get("_claim_names")
            .and_then(|names| names.get("groups"))
            .is_some()
}

/// The ids of every group the user is a member of (transitively), from
/// Microsoft Graph with the user's access token: `POST
/// {graph}/v1.0/me/getMemberGroups` with `{"securityEnabledOnly": false}`,
/// answering `{"value": ["<group object id>", ...]}` (up to 11,000; more is a
/// 400 `Directory_ResultSizeLimitExceeded`, which fails the sign-in like any
/// other error). Group object ids, like the `groups` claim itself; unlike
/// `getMemberObjects`, no directory roles or administrative units.
/// https://learn.microsoft.com/en-us/graph/api/directoryobject-getmembergroups
/// Needs delegated `GroupMember.Read.All` (with `User.ReadBasic.All`) or
/// `Directory.Read.All`, admin-consented; the endpoint the overage names
/// (`_claim_sources.src1.endpoint`) is the retired Azure AD Graph and is not used.
pub(super) async fn overage_groups(
    http: &ProviderHttp,
    graph: &Url,
    access_token: &str,
) -> Result<Vec<String>, HttpError> {
    let mut url = graph.clone();
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}/v1.0/me/getMemberGroups"));
    let body = serde_json::json!({ "securityEnabledOnly": false });
    let response = http.post_json(&url, access_token, &body).await?;
    let answer = json_object(&url, &response)?;
    let Some(Value::Array(ids)) = answer.get("value") else {
        return Err(HttpError::at(
            &url,
            HttpFailure::NotJson("the answer has no \"value\" list".into()),
        ));
    };
    Ok(ids
        .iter()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
    const TID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_groups_overage_is_a_groups_claim_source_without_groups() {
        let overage = json!({"_claim_names": {"groups": "src1"},
            "_claim_sources": {"src1": {"endpoint": "https://graph.windows.net/x"}}});
        assert!(has_groups_overage(&claims(overage)));
        assert!(!has_groups_overage(&claims(
            json!({"groups": ["g"], "_claim_names": {"groups": "src1"}})
        )));
        assert!(!has_groups_overage(&claims(
            json!({"_claim_names": {"roles": "src1"}})
        )));
        assert!(!has_groups_overage(&claims(
            json!({"_claim_names": "groups"})
        )));
        assert!(!has_groups_overage(&claims(json!({}))));
    }

    #[test]
    fn only_xms_edov_marks_an_entra_email_verified() {
        for (given, want) in [
            (json!({"email": "a@x.org", "xms_edov": true}), true),
            (json!({"email": "a@x.org", "xms_edov": "1"}), true),
            (json!({"email": "a@x.org"}), false),
            (json!({"email": "a@x.org", "xms_edov": false}), false),
            (json!({"email": "a@x.org", "email_verified": true}), true),
        ] {
            let mut c = claims(given.clone());
            email_verified_from_edov(&mut c);
            assert_eq!(c["email_verified"], json!(want), "{given}");
        }
    }

    #[test]
    fn template_issuer_must_be_filled_with_the_tokens_tid() {
        let iss = format!("https://login.microsoftonline.com/{TID}/v2.0");
        assert!(check_tenant(TEMPLATE, &claims(json!({"iss": iss, "tid": TID})), &[]).is_ok());
        let other = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/v2.0";
        assert!(matches!(
            check_tenant(TEMPLATE, &claims(json!({"iss": other, "tid": TID})), &[]),
            Err(ProviderError::InvalidIdToken(_))
        ));
        for c in [json!({"iss": iss}), json!({"iss": iss, "tid": "a/b"})] {
            assert!(matches!(
                check_tenant(TEMPLATE, &claims(c), &[]),
                Err(ProviderError::InvalidIdToken(_))
            ));
        }
    }

    #[test]
    fn allowed_tenants_restrict_tid_whatever_the_issuer() {
        let iss = format!("https://login.microsoftonline.com/{TID}/v2.0");
        let c = claims(json!({"iss": iss, "tid": TID}));
        assert!(check_tenant(TEMPLATE, &c, &[TID.to_uppercase()]).is_ok());
        assert!(matches!(
            check_tenant(TEMPLATE, &c, &["another-tenant".into()]),
            Err(ProviderError::NotPermitted(_))
        ));
        assert!(matches!(
            check_tenant(&iss, &claims(json!({"iss": iss})), &[TID.into()]),
            Err(ProviderError::NotPermitted(_))
        ));
    }

    #[test]
    fn the_template_does_not_assume_microsofts_host() {
        let template = "http://127.0.0.1:8080/{tenantid}/v2.0";
        assert!(matches_template(
            template,
            "http://127.0.0.1:8080/tenant-1/v2.0"
        ));
        assert!(!matches_template(
            template,
            "http://127.0.0.1:8080/a/b/v2.0"
        ));
        assert!(!matches_template(
            template,
            "https://evil.example/tenant-1/v2.0"
        ));
        assert!(!matches_template(template, "http://127.0.0.1:8080//v2.0"));
    }

    #[test]
    fn discovery_may_publish_the_template_or_the_resolved_tenant_only() {
        let ours = "http://127.0.0.1:8080/common/v2.0";
        assert!(is_published_issuer_for(
            ours,
            "http://127.0.0.1:8080/{tenantid}/v2.0"
        ));
        assert!(is_published_issuer_for(
            ours,
            &format!("http://127.0.0.1:8080/{TID}/v2.0")
        ));
        assert!(is_published_issuer_for(ours, ours));
        assert!(!is_published_issuer_for(
            ours,
            "http://127.0.0.2:8080/{tenantid}/v2.0"
        ));
        assert!(!is_published_issuer_for(
            ours,
            "http://127.0.0.1:8080/{tenantid}/v1.0"
        ));
        assert!(!is_published_issuer_for(
            ours,
            "http://127.0.0.1:8080/{tenantid}/x/v2.0"
        ));
    }
}
