//! The admin port's TLS: the configured certificate and key, or a
//! self-signed pair generated on first start and kept in the state
//! directory; its SHA-256 fingerprint; and the client side used by
//! `portier status` (pin the fingerprint, or trust a CA file).
//!
//! Guarantees: the ring provider is passed explicitly (no process-wide
//! default needed, no aws-lc); a generated key is written with mode 0600
//! and never overwritten; a pinned client accepts exactly one certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::AdminError;

/// The ring provider, the only one in the build.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificate and key the server uses.
#[derive(Debug)]
pub struct TlsMaterial {
    /// Certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate, `AB:CD:…`.
    pub fingerprint: String,
    /// Where the leaf certificate is (configured or generated).
    pub cert_path: PathBuf,
    /// Generated on this start.
    pub generated: bool,
}

/// SHA-256 fingerprint of a DER certificate as colon-separated upper-case
/// hex (the form browsers show).
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Why a client cannot trust as told (the server side's failures are
/// [`AdminError::Tls`]: they stop the admin port, these only a client).
#[derive(Debug, Error)]
pub enum TrustError {
    /// A pinned fingerprint as typed is not hex digits.
    #[error("fingerprint {0:?} is not hex")]
    NotHex(String),
    /// A pinned fingerprint is hex but not a SHA-256 (32 bytes): a
    /// truncated copy or another hash would pin nothing.
    #[error("fingerprint {0:?} is not 32 bytes (SHA-256)")]
    NotSha256(String),
    /// rustls refused the protocol versions of the ring provider.
    #[error("{0}")]
    Protocol(#[source] rustls::Error),
    /// The CA file cannot be read or holds no usable PEM certificates.
    #[error("{}: {source}", path.display())]
    CaPem {
        /// The CA file.
        path: PathBuf,
        /// Why it is unusable.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate in the CA file is not one rustls accepts as a root.
    #[error("{}: {source}", path.display())]
    CaCert {
        /// The CA file.
        path: PathBuf,
        /// Why the certificate is refused.
        #[source]
        source: rustls::Error,
    },
}

/// Normalise a fingerprint as typed (any case, with or without colons).
pub fn normalise_fingerprint(text: &str) -> Result<String, TrustError> {
    let hexdigits: String = text
        .trim()
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    let bytes = hex::decode(&hexdigits).map_err(|_| TrustError::NotHex(text.to_owned()))?;
    if bytes.len() != 32 {
        return Err(TrustError::NotSha256(text.to_owned()));
    }
    Ok(bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Load the configured pair, or the one generated earlier in `state_dir`,
/// or generate one there.
pub fn load_or_generate(
    cert: Option<&Path>,
    key: Option<&Path>,
    state_dir: &Path,
    names: &[String],
) -> Result<TlsMaterial, AdminError> {
    match (cert, key) {
        (Some(c), Some(k)) => load(c, k, false),
        (None, None) => {
            let dir = state_dir.join("admin-tls");
            let c = dir.join("cert.pem");
            let k = dir.join("key.pem");
            if c.exists() || k.exists() {
                return load(&c, &k, false);
            }
            generate(&dir, &c, &k, names)?;
            load(&c, &k, true)
        }
        _ => Err(AdminError::Config(
            "admin: give both `cert` and `key`, or neither (a self-signed pair is generated)"
                .into(),
        )),
    }
}

fn load(cert: &Path, key: &Path, generated: bool) -> Result<TlsMaterial, AdminError> {
    let tls_err = |p: &Path, e: String| AdminError::Tls(format!("{}: {e}", p.display()));
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(cert, e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(tls_err(cert, "no certificate in the file".into()));
    };
    let fingerprint = fingerprint(leaf);
    // Say what to do when the service user cannot read its key.
    std::fs::File::open(key)
        .map_err(|e| tls_err(key, crate::secret_files::unreadable_fix(key, &e)))?;
    crate::secret_files::warn_if_exposed(key);
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, e.to_string()))?;
    Ok(TlsMaterial {
        chain,
        key,
        fingerprint,
        cert_path: cert.to_owned(),
        generated,
    })
}

fn generate(dir: &Path, cert: &Path, key: &Path, names: &[String]) -> Result<(), AdminError> {
    let io = |p: &Path, e: std::io::Error| AdminError::Tls(format!("{}: {e}", p.display()));
    let mut sans = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    sans.extend(names.iter().cloned());
    let pair = rcgen::KeyPair::generate().map_err(|e| AdminError::Tls(e.to_string()))?;
    let mut params =
        rcgen::CertificateParams::new(sans).map_err(|e| AdminError::Tls(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Portier gateway admin");
    let c = params
        .self_signed(&pair)
        .map_err(|e| AdminError::Tls(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    write_new(key, pair.serialize_pem().as_bytes(), 0o600).map_err(|e| io(key, e))?;
    write_new(cert, c.pem().as_bytes(), 0o644).map_err(|e| io(cert, e))?;
    Ok(())
}

/// Create a file that must not exist yet, with this mode, and sync it.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The rustls server configuration (HTTP/1.1 only).
pub fn server_config(m: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, AdminError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| AdminError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(m.chain.clone(), m.key.clone_key())
        .map_err(|e| AdminError::Tls(format!("{}: {e}", m.cert_path.display())))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// How a client decides to trust the admin port's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Exactly the certificate with this SHA-256 fingerprint (any form
    /// [`normalise_fingerprint`] takes).
    Fingerprint(String),
    /// Certificates chaining to the CA certificates in this PEM file.
    CaFile(PathBuf),
    /// Any certificate. Only for `--insecure`; says so on stderr.
    Any,
}

/// A rustls client configuration for this trust.
pub fn client_config(trust: &Trust) -> Result<Arc<rustls::ClientConfig>, TrustError> {
    let p = provider();
    let builder = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(TrustError::Protocol)?;
    let cfg = match trust {
        Trust::Fingerprint(f) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                fingerprint: Some(normalise_fingerprint(f)?),
                provider: p,
            }))
            .with_no_client_auth(),
        Trust::Any => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                fingerprint: None,
                provider: p,
            }))
            .with_no_client_auth(),
        Trust::CaFile(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let pem = |source| TrustError::CaPem {
                path: path.clone(),
                source,
            };
            for c in CertificateDer::pem_file_iter(path).map_err(pem)? {
                roots
                    .add(c.map_err(pem)?)
                    .map_err(|source| TrustError::CaCert {
                        path: path.clone(),
                        source,
                    })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    let mut cfg = cfg;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts the one certificate whose fingerprint is pinned (or any, when
/// none is), and still checks the handshake signatures.
#[derive(Debug)]
struct Pinned {
    fingerprint: Option<String>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.fingerprint {
            None => Ok(ServerCertVerified::assertion()),
            Some(f) if *f == fingerprint(end_entity) => Ok(ServerCertVerified::assertion()),
            Some(_) => Err(rustls::Error::General(format!(
                "server certificate fingerprint {} is not the pinned one",
                fingerprint(end_entity)
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_generate(None, None, dir.path(), &["gw1.example".into()]).unwrap();
        assert!(a.generated);
        let b = load_or_generate(None, None, dir.path(), &[]).unwrap();
        assert!(!b.generated);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(dir.path().join("admin-tls/key.pem")).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
        server_config(&b).unwrap();
        // Configured files are used as they are.
        let c = load_or_generate(
            Some(&dir.path().join("admin-tls/cert.pem")),
            Some(&dir.path().join("admin-tls/key.pem")),
            Path::new("/nonexistent"),
            &[],
        )
        .unwrap();
        assert_eq!(c.fingerprint, a.fingerprint);
        assert!(load_or_generate(Some(Path::new("/x")), None, dir.path(), &[]).is_err());
    }

    #[test]
    fn fingerprints_normalise() {
        let f = fingerprint(b"x");
        assert_eq!(normalise_fingerprint(&f.to_lowercase()).unwrap(), f);
        assert_eq!(normalise_fingerprint(&f.replace(':', "")).unwrap(), f);
        assert!(normalise_fingerprint("abc").is_err());
    }
}
