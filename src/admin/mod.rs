//! The technician's admin port: HTTPS (axum over rustls via axum-server)
//! with a server-rendered status page, a JSON API, Prometheus metrics and
//! operator door actions.
//!
//! What it owns: TLS material (configured, or self-signed and generated on
//! first start), users/tokens/roles, sessions, CSRF, the login back-off, and
//! rendering. What it does not own: any door, rule or event; it reads and
//! acts through [`AdminBackend`], which the daemon implements.
//!
//! Guarantees:
//! - nothing but `/healthz` and the login form answers without a session
//!   or a bearer token; door actions need the `operator` role;
//! - every form POST carries the session's CSRF token (cookie-authenticated
//!   JSON POSTs carry it in `X-CSRF-Token`); bearer requests need none;
//! - the session cookie is `HttpOnly; Secure; SameSite=Strict` with the
//!   `__Host-` prefix;
//! - every login (ok, failed, locked out) and every door action (done,
//!   refused, forbidden) is recorded through [`AdminBackend::record`];
//! - the clock is read in this driver only at request time and passed to the
//!   sans-IO [`auth`] core.
//!
//! # Plugging it into the daemon
//! ```ignore
//! let running = portier::admin::serve(&cfg.admin, &state_dir, backend, metrics, shutdown_rx).await?;
//! // journal/log running.fingerprint (and running.cert_generated)
//! running.join().await?;
//! ```

pub mod auth;
mod backend;
pub mod client;
mod failed_logins;
mod metrics;
mod page;
mod password_checks;
mod routes;
mod text;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use auth::{LockoutConfig, Role, SessionConfig, TokenEntry, UserEntry, UsersFile};
pub use backend::{
    ActionOutcome, AdminBackend, BackendError, BoxFuture, DoorActionRequest, DoorCommand,
    MAX_OVERRIDE_MINUTES, MAX_UNLOCK_SECS, OverrideChoice, PassageDirection, WhyAnswer,
    WhyDecision, WhyQuery, parse_card_text, why_answer,
};
pub use metrics::Metrics;
pub use routes::{ROUTES, Route, fuzz_request_text};
pub use text::{muster_text, status_text};

/// Admin port failures (start-up only; request errors are responses).
#[derive(Debug, Error)]
pub enum AdminError {
    /// The `[admin]` section is inconsistent.
    #[error("{0}")]
    Config(String),
    /// The users file cannot be read or parsed; the message says the fix.
    #[error("admin users file {file}: {message}")]
    Users {
        /// File.
        file: String,
        /// What is wrong, and what to do.
        message: String,
    },
    /// Certificate or key unusable, or generating them failed.
    #[error("admin TLS: {0}")]
    Tls(String),
    /// Binding or serving failed.
    #[error("admin port {addr}: {source}")]
    Io {
        /// Listen address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

impl AdminError {
    /// The file at fault, when one is.
    pub fn file(&self) -> Option<&str> {
        match self {
            Self::Users { file, .. } => Some(file),
            _ => None,
        }
    }
}

/// `[admin]` in the daemon config.
///
/// ```toml
/// [admin]
/// listen = "0.0.0.0:8443"
/// # cert = "admin.crt"        # both or neither; neither: self-signed,
/// # key = "admin.key"         # generated in the state dir on first start
/// users_file = "admin-users.toml"   # written by `portier admin passwd/token`
/// [admin.lockout]             # optional, defaults shown (a back-off)
/// max_failures = 5
/// max_failures_per_address = 10
/// window_secs = 900
/// lockout_secs = 900
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address and port to listen on (`0` picks a free port).
    pub listen: SocketAddr,
    /// PEM certificate chain (leaf first).
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Extra DNS names / IP addresses for a generated certificate (besides
    /// `localhost`, `127.0.0.1`, `::1`).
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// A TOML file of `[[user]]` and `[[token]]` entries
    /// ([`UsersFile`]), re-read when it changes.
    pub users_file: Option<PathBuf>,
    /// Users given inline (same fields as the file's `[[user]]`).
    #[serde(default)]
    pub users: Vec<UserEntry>,
    /// Tokens given inline (same fields as the file's `[[token]]`).
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    /// Login lockout.
    #[serde(default)]
    pub lockout: LockoutConfig,
    /// Session lifetimes.
    #[serde(default)]
    pub session: SessionConfig,
}

impl AdminConfig {
    /// Resolve relative paths against the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.cert, &mut self.key, &mut self.users_file]
            .into_iter()
            .flatten()
        {
            *p = base.join(&*p);
        }
    }

    /// Read `[admin]` from a whole daemon config file (for the CLI verbs,
    /// which need no other section), with paths resolved.
    pub fn from_config_file(file: &Path) -> Result<Self, AdminError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| AdminError::Config(format!("{}: {e}", file.display())))?;
        #[derive(Deserialize)]
        struct Outer {
            admin: Option<AdminConfig>,
        }
        let outer: Outer = toml::from_str(&text)
            .map_err(|e| AdminError::Config(format!("{}: {e}", file.display())))?;
        let mut cfg = outer
            .admin
            .ok_or_else(|| AdminError::Config(format!("{}: no [admin] section", file.display())))?;
        cfg.resolve_paths(file.parent().unwrap_or(Path::new(".")));
        Ok(cfg)
    }
}

/// Read a users file; a missing file is empty (first start).
pub fn read_users_file(path: &Path) -> Result<UsersFile, AdminError> {
    let err = |message: String| AdminError::Users {
        file: path.display().to_string(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            crate::secret_files::warn_if_exposed(path);
            toml::from_str(&text).map_err(|e| err(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsersFile::default()),
        Err(e) => Err(err(crate::secret_files::unreadable_fix(path, &e))),
    }
}

/// Write a users file atomically (temporary file, fsync, rename).
///
/// Who may read it is kept: a file that exists keeps its group and mode
/// (never readable by others), so `portier admin passwd` run as root does
/// not take the file away from the service user. A new file gets the group
/// of `group_of` (the daemon's config file, which the package makes
/// `root:portier 0640`) and mode 0640; without it, mode 0600.
pub fn write_users_file(
    path: &Path,
    users: &UsersFile,
    group_of: Option<&Path>,
) -> Result<(), AdminError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let err = |message: String| AdminError::Users {
        file: path.display().to_string(),
        message,
    };
    let text = format!(
        "# Portier admin users and API tokens. Written by `portier admin passwd`\n\
         # and `portier admin token`; passwords are argon2 hashes, tokens SHA-256.\n\n{}",
        toml::to_string(users).map_err(|e| err(e.to_string()))?
    );
    let (mode, gid) = match (std::fs::metadata(path), group_of.map(std::fs::metadata)) {
        (Ok(m), _) => (m.mode() & 0o770, Some(m.gid())),
        (Err(_), Some(Ok(m))) => (0o640, Some(m.gid())),
        _ => (0o600, None),
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    tls::write_new(&tmp, text.as_bytes(), 0o600).map_err(|e| err(e.to_string()))?;
    if let Some(gid) = gid
        && let Err(e) = std::os::unix::fs::chown(&tmp, None, Some(gid))
    {
        tracing::warn!(
            "{}: cannot give it group {gid} ({e}); the service may not read it",
            path.display()
        );
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode | 0o600))
        .map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
}

/// A running admin port.
#[derive(Debug)]
pub struct AdminServer {
    /// The address it listens on (the real port when `listen` had port 0).
    pub addr: SocketAddr,
    /// SHA-256 fingerprint of its certificate (`AB:CD:…`): journal it.
    pub fingerprint: String,
    /// The certificate was generated on this start.
    pub cert_generated: bool,
    /// Where the certificate is.
    pub cert_path: PathBuf,
    /// Users and tokens known at start (0 users: nobody can log in until
    /// `portier admin passwd` is run).
    pub users: usize,
    task: JoinHandle<Result<(), AdminError>>,
}

impl AdminServer {
    /// Wait until the server has stopped (after `shutdown` turned true).
    pub async fn join(self) -> Result<(), AdminError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(AdminError::Io {
                addr: self.addr,
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }
}

/// [`serve`] for the daemon: a fault of the admin port (users file
/// unreadable, certificate unusable, port taken) must not stop the doors or
/// send the service into a restart loop. On error the port stays off: the
/// fault is logged with the file and the fix, and an `admin_unavailable`
/// alarm is journaled through the backend.
pub async fn serve_or_alarm(
    cfg: &AdminConfig,
    state_dir: &Path,
    backend: Arc<dyn AdminBackend>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Option<AdminServer> {
    match serve(cfg, state_dir, backend.clone(), metrics, shutdown).await {
        Ok(server) => Some(server),
        Err(e) => {
            tracing::error!(
                file = e.file().unwrap_or(""),
                "admin port OFF (the doors work on): {e}; restart the service after the fix"
            );
            let alarm = crate::event::EventKind::AdminUnavailable {
                file: e.file().map(str::to_owned),
                reason: e.to_string(),
            };
            // Journaled from a task: the daemon's loop may only start
            // consuming records after this has returned.
            tokio::spawn(async move {
                if let Err(e) = backend.record(alarm).await {
                    tracing::error!("admin_unavailable not journaled: {e}");
                }
            });
            None
        }
    }
}

/// Start the admin port: load or generate the certificate, bind, and serve
/// in a spawned task until `shutdown` becomes `true` (then connections get
/// up to 5 s to finish). Returns once the port is bound.
pub async fn serve(
    cfg: &AdminConfig,
    state_dir: &Path,
    backend: Arc<dyn AdminBackend>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> Result<AdminServer, AdminError> {
    let material = tls::load_or_generate(
        cfg.cert.as_deref(),
        cfg.key.as_deref(),
        state_dir,
        &cfg.hostnames,
    )?;
    let tls_config = tls::server_config(&material)?;
    let state = Arc::new(routes::AppState::new(cfg, backend.clone(), metrics)?);
    let users = state.user_count();
    let app = routes::router(state.clone());

    let io = |source| AdminError::Io {
        addr: cfg.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(cfg.listen).map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(tls_config),
    )
    .handle(handle.clone());
    let stopper = handle.clone();
    tokio::spawn(async move {
        // Failed logins are journaled as sums once a minute; stop when
        // told, or when the sender is gone, with the last minute's sums.
        let minute = std::time::Duration::from_secs(60);
        let mut tick = tokio::time::interval_at(crate::clock::timer() + minute, minute);
        while !*shutdown.borrow_and_update() {
            tokio::select! {
                _ = tick.tick() => state.end_failed_login_minute().await,
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        state.end_failed_login_minute().await;
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    tracing::info!(
        %addr,
        fingerprint = %material.fingerprint,
        cert = %material.cert_path.display(),
        generated = material.generated,
        users,
        "admin port listening"
    );
    if users == 0 {
        tracing::warn!(
            "admin port: no users yet, nobody can log in; run `portier admin passwd --config CFG --user NAME --role operator`"
        );
    }
    // Journaled from a task: the daemon's loop may only start consuming
    // records after `serve` has returned.
    let started = crate::event::EventKind::AdminStarted {
        listen: addr.to_string(),
        fingerprint: material.fingerprint.clone(),
        cert_generated: material.generated,
    };
    tokio::spawn(async move {
        if let Err(e) = backend.record(started).await {
            tracing::error!("admin start not journaled: {e}");
        }
    });
    let task = tokio::spawn(async move {
        server
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .map_err(|source| AdminError::Io { addr, source })
    });
    Ok(AdminServer {
        addr,
        fingerprint: material.fingerprint,
        cert_generated: material.generated,
        cert_path: material.cert_path,
        users,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_admin_section_parses() {
        let file = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/portier.example.toml"
        ));
        let cfg = AdminConfig::from_config_file(file).unwrap();
        assert_eq!(cfg.listen.port(), 8443);
        assert_eq!(cfg.lockout, LockoutConfig::default());
        assert_eq!(cfg.session, SessionConfig::default());
        assert!(cfg.users.is_empty() && cfg.cert.is_none());
        assert_eq!(
            cfg.users_file.unwrap(),
            file.parent().unwrap().join("admin-users.toml")
        );
        // Unknown keys are errors, not silently ignored.
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            "[admin]\nlisten = \"127.0.0.1:0\"\npassword = \"admin\"\n",
        )
        .unwrap();
        let e = AdminConfig::from_config_file(&bad).unwrap_err().to_string();
        assert!(e.contains("password"), "{e}");
    }
}
