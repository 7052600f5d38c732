//! The discovery document (OpenID Connect Discovery 1.0 §3), in the plain
//! layout or in Microsoft's per-tenant one.

use serde_json::{Value, json};

use super::{CONSUMERS_TENANT_ID, Layout, ResponseIss, State};

/// `tenant` is the path's first segment in the Microsoft layout, else empty.
pub(super) fn metadata(state: &State, tenant: &str) -> Value {
    let mut metadata = match state.opts.layout {
        Layout::MicrosoftTenants => microsoft(state, tenant),
        Layout::Root | Layout::UnderPath(_) => single_issuer(state),
    };
    metadata["token_endpoint_auth_methods_supported"] = json!(state.opts.token_auth_methods);
    if state.opts.response_iss == ResponseIss::Advertised {
        metadata["authorization_response_iss_parameter_supported"] = json!(true);
    }
    metadata
}

fn single_issuer(state: &State) -> Value {
    let endpoint = |path: &str| format!("{}{path}", state.issuer);
    json!({
        "issuer": state.issuer,
        "authorization_endpoint": endpoint("/authorize"),
        "token_endpoint": endpoint("/token"),
        "userinfo_endpoint": endpoint("/userinfo"),
        "jwks_uri": endpoint("/jwks"),
        "revocation_endpoint": endpoint("/revoke"),
        "introspection_endpoint": endpoint("/introspect"),
        "end_session_endpoint": endpoint(
            state.inner().end_session_path.as_deref().unwrap_or("/end_session")
        ),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile", "groups"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "azp", "sid", "email",
            "email_verified", "name", "preferred_username", "groups"],
    })
}

/// As `https://login.microsoftonline.com/<tenant>/v2.0/.well-known/openid-configuration`
/// answers: `common` and `organizations` publish the literal `{tenantid}` template as
/// issuer, and there is no `code_challenge_methods_supported`. Like Microsoft's, it
/// publishes an `end_session_endpoint` but no `revocation_endpoint` and no
/// back-channel logout.
fn microsoft(state: &State, tenant: &str) -> Value {
    let base = &state.base;
    let issuer_tenant = match tenant {
        "common" | "organizations" => "{tenantid}",
        "consumers" => CONSUMERS_TENANT_ID,
        tenant => tenant,
    };
    json!({
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/{issuer_tenant}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{base}/oidc/userinfo"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
            "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
            "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "tenant_region_scope": null,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    })
}
