//! Providers behind a private CA: reached once `server.extra_ca_file`
//! names it, refused with the certificate problem before.

use ::http::{Request, Response};
use hyper::body::Incoming;
use tokio_util::task::TaskTracker;
use url::Url;

use super::super::http::{HttpFailure, ProviderHttp};
use crate::config::tls::test_pki::TestCa;
use crate::server::test_support::{LIMITS, spawn};
use crate::server::{ConnInfo, Handler};
use crate::{Body, full};

/// Serves one JSON document, as a discovery endpoint would.
struct Discovery;

impl Handler for Discovery {
    async fn handle(&self, _req: Request<Incoming>, _conn: ConnInfo) -> Response<Body> {
        Response::new(full(r#"{"issuer":"https://sso.internal"}"#))
    }
}

#[tokio::test]
async fn a_provider_behind_a_private_ca_is_reached_only_with_extra_ca_file() {
    let ca = TestCa::new("provider");
    let server = TestCa::server(&ca.leaf(&["127.0.0.1"]), None);
    let idp = spawn(Discovery, LIMITS, Some(server), TaskTracker::new()).await;
    let url = Url::parse(&format!(
        "https://{}/.well-known/openid-configuration",
        idp.addr
    ))
    .unwrap();

    let err = ProviderHttp::new(None)
        .unwrap()
        .get_json(&url, None)
        .await
        .unwrap_err();
    assert!(matches!(err.reason, HttpFailure::Connect(_)), "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    let document = ProviderHttp::new(Some(&ca.bundle()))
        .unwrap()
        .get_json(&url, None)
        .await
        .unwrap();
    assert_eq!(document["issuer"], "https://sso.internal");
    idp.stop().await;
}
