//! A private CA made fresh for a test, the certificates it signs, and the
//! PEM files the configuration points at.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::CaBundle;

pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Where this CA's files are written; removed on drop.
    dir: PathBuf,
}

/// A certificate and its key, in PEM.
pub(crate) struct Leaf {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl TestCa {
    /// `name` keeps the files of tests running at once apart.
    pub(crate) fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("portcullis test CA {name}"),
        );
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir =
            std::env::temp_dir().join(format!("portcullis-pki-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { issuer, dir }
    }

    /// A certificate for `names` (DNS names or IP addresses).
    pub(crate) fn leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// This CA's certificate as a PEM file.
    pub(crate) fn ca_file(&self) -> PathBuf {
        self.write("ca.pem", &self.issuer.pem())
    }

    pub(crate) fn bundle(&self) -> CaBundle {
        CaBundle::read(&self.ca_file()).unwrap()
    }

    pub(crate) fn write(&self, file: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(file);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// A TLS server presenting `leaf`; it requires a client
    /// certificate signed by `client_ca` when given.
    pub(crate) fn server(leaf: &Leaf, client_ca: Option<&TestCa>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.issuer.der().clone()).unwrap();
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let chain = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
