//! TLS material named in the configuration (CA bundles, a client
//! certificate), read and checked while validating, and the roots that
//! outgoing TLS trusts: the system store, the compiled-in webpki roots, and
//! any configured bundle.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Serialize, Serializer};

/// The certificates of a PEM bundle, and the file they came from.
#[derive(Clone, Debug, PartialEq)]
pub struct CaBundle {
    pub path: PathBuf,
    pub certs: Vec<CertificateDer<'static>>,
}

impl CaBundle {
    /// Every certificate in the PEM file at `path`; none at all is an error,
    /// so a wrong file (a key, a DER file) is noticed at start-up.
    pub(crate) fn read(path: &Path) -> Result<Self, String> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "{} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\"); give a PEM bundle of CA certificates",
                path.display()
            ));
        }
        Ok(Self {
            path: path.to_owned(),
            certs,
        })
    }
}

/// A client certificate chain and its private key, for mutual TLS.
#[derive(Clone, PartialEq)]
pub struct ClientIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl ClientIdentity {
    /// Reads both files; the error names which one is wrong (`Err((key, problem))`).
    pub(crate) fn read(cert_file: &Path, key_file: &Path) -> Result<Self, (&'static str, String)> {
        let chain = CaBundle::read(cert_file)
            .map_err(|e| {
                (
                    "client_cert_file",
                    e.replace("CA certificates", "the client certificate chain"),
                )
            })?
            .certs;
        let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
            (
                "client_key_file",
                format!(
                    "cannot read a PEM private key (PKCS#8, PKCS#1 or SEC1) from {}: {e}",
                    key_file.display()
                ),
            )
        })?;
        Ok(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            chain,
            key: Arc::new(key),
        })
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

// `portcullis check` shows the files, never their contents.
impl Serialize for CaBundle {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.path.serialize(s)
    }
}

impl Serialize for ClientIdentity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.cert_file, &self.key_file).serialize(s)
    }
}

/// The roots outgoing TLS trusts: the system store, webpki's roots (so a
/// container without a CA bundle still reaches public providers), and
/// `extra` (a private CA).
pub fn roots(extra: Option<&CaBundle>) -> RootCertStore {
    let mut store = RootCertStore::empty();
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // A system certificate rustls cannot parse is skipped, not fatal:
    // distributions ship a few odd ones.
    store.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(extra) = extra {
        store.add_parsable_certificates(extra.certs.iter().cloned());
    }
    store
}

/// The system's trusted certificates, loaded once (reading the store takes
/// tens of milliseconds) and reported at the first use, at start-up.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::warn!(%error, "could not load part of the system's trusted certificates");
        }
        if loaded.certs.is_empty() {
            tracing::warn!(
                "no system trusted certificates found; only the compiled-in webpki roots and configured CA files are trusted"
            );
        } else {
            tracing::info!(roots = loaded.certs.len(), "loaded the system's trusted certificates");
        }
        loaded.certs
    })
}

#[cfg(test)]
pub(crate) mod test_pki;
