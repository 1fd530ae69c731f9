//! The uplink's mutual TLS: the central CA as the only root, this gateway's
//! certificate and key for client authentication. Built from the files the
//! config names, so `check-config` can test them without the MQTT driver.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use super::UplinkConfig;

/// A certificate or key that does not make a TLS client config; the text
/// names the file.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// Build the rustls client config: the central CA as the only root, this
/// gateway's certificate and key for client authentication.
pub fn client_config(cfg: &UplinkConfig) -> Result<rustls::ClientConfig, TlsError> {
    let fail = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        TlsError(format!("{}: {e}", what.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&cfg.ca).map_err(|e| fail(&cfg.ca, &e))? {
        roots
            .add(cert.map_err(|e| fail(&cfg.ca, &e))?)
            .map_err(|e| fail(&cfg.ca, &e))?;
    }
    if roots.is_empty() {
        return Err(fail(&cfg.ca, &"no CA certificate in the file"));
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| fail(&cfg.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(&cfg.cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| fail(&cfg.key, &e))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| fail(&cfg.cert, &e))
}
