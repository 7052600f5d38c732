//! The rustls client for an `https` upstream: which roots it trusts, which
//! name it checks, and the client certificate it presents.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

use crate::config::{UpstreamConfig, tls};

/// The HTTP/1.1 connector and the server name (SNI and the certificate's
/// expected name) for `cfg`; `url_host` is the name unless `tls_server_name` is set.
///
/// # Panics
/// If the name is invalid, which config validation rules out.
pub(super) fn connector(
    cfg: &UpstreamConfig,
    url_host: &str,
) -> (TlsConnector, ServerName<'static>) {
    let mut config = client_config(cfg);
    // HTTP/1.1 only: upgrades and Connection semantics exist only there.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = cfg.tls_server_name.as_deref().unwrap_or(url_host);
    let name = ServerName::try_from(name.to_owned())
        .expect("a URL's host or a validated tls_server_name is a DNS name or an IP address");
    (TlsConnector::from(Arc::new(config)), name)
}

/// The rustls client for `cfg`: its roots or `insecure_skip_verify`, and its
/// client certificate; no ALPN yet.
///
/// # Panics
/// If the client key is invalid, which config validation rules out.
pub(super) fn client_config(cfg: &UpstreamConfig) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the safe default TLS versions");
    let builder = if cfg.insecure_skip_verify {
        tracing::warn!(
            upstream = %cfg.url,
            "upstream.insecure_skip_verify = true: the upstream's certificate is NOT checked, so anyone on the network path can impersonate it and read every request, identity headers included; configure upstream.ca_file instead"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                provider.signature_verification_algorithms,
            )))
    } else {
        builder.with_root_certificates(tls::roots(cfg.ca_file.as_ref()))
    };
    match &cfg.client_cert {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .expect("a validated client certificate and key"),
        None => builder.with_no_client_auth(),
    }
}

/// The rustls error behind a failed connect, if the TLS handshake is what
/// failed. It sits inside an `io::Error`, possibly wrapped in another, and
/// `io::Error::source` skips the error it wraps, so that is followed by hand.
pub(super) fn failure(error: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        cause = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake's
/// signatures are still checked, so the connection is at least to whoever
/// holds the key of the certificate it presented.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
