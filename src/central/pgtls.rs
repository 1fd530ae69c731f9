//! TLS to PostgreSQL with certificate verification: `sslmode =
//! "verify-full"` (libpq's meaning: the server's chain must lead to the
//! configured CA, and its certificate must name the host central dials)
//! and an optional client certificate. rustls with the ring provider, as
//! everywhere in Portier; no system roots, the CA file is the only root.
//!
//! Guarantees: with `verify-full` the connection is TLS or nothing
//! (tokio-postgres' `SslMode::Require`: a server that does not speak TLS
//! is refused, never used in plain text); a certificate that does not
//! chain to the CA or does not name the host fails the handshake.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// A CA, certificate or key file for PostgreSQL's TLS that cannot be used.
#[derive(Debug, Error)]
#[error("[postgres] {key}: {path}: {message}")]
pub struct PgTlsError {
    /// The config key naming the file.
    pub key: &'static str,
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// The rustls client config: `ca` as the only root, `client` (certificate
/// chain, key) for client-certificate authentication when given.
pub fn client_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, PgTlsError> {
    let fail = |key, path: &Path, e: &dyn std::fmt::Display| PgTlsError {
        key,
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| fail("ca", ca, &e))? {
        roots
            .add(cert.map_err(|e| fail("ca", ca, &e))?)
            .map_err(|e| fail("ca", ca, &e))?;
    }
    if roots.is_empty() {
        return Err(fail("ca", ca, &"no CA certificate in the file"));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail("ca", ca, &e))?
    .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| fail("cert", cert, &e))?
                .collect::<Result<_, _>>()
                .map_err(|e| fail("cert", cert, &e))?;
            if chain.is_empty() {
                return Err(fail("cert", cert, &"no certificate in the file"));
            }
            let k = PrivateKeyDer::from_pem_file(key).map_err(|e| fail("key", key, &e))?;
            builder
                .with_client_auth_cert(chain, k)
                .map_err(|e| fail("cert", cert, &e))
        }
    }
}

/// tokio-postgres' TLS hook over rustls (verify-full).
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
}

impl MakeRustls {
    /// Connections verified against `config`.
    pub fn new(config: rustls::ClientConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    /// `domain` is the `host` central dials (not `hostaddr`): the name the
    /// server's certificate must carry, as in libpq's verify-full.
    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            name: ServerName::try_from(domain.to_owned())?,
            config: self.config.clone(),
        })
    }
}

/// One connection's TLS handshake.
pub struct RustlsConnect {
    name: ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// A TLS stream to PostgreSQL.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    /// No channel binding: SCRAM runs without `-PLUS` (the certificate
    /// check already binds the connection to the server).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
