//! `central.toml` (documented key by key in `config/central.example.toml`):
//! PostgreSQL, the broker and this instance's certificate, the signing key.
//!
//! Guarantees: a parse error names the file, line and key; private key
//! files (TLS key, signing key, PostgreSQL password file) must not be
//! readable by group or others, as on the gateway; no secret is ever part
//! of a `Debug` or log line (the connection string names a password file,
//! never a password).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// `central.toml` could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or shape.
    #[error("{0}")]
    Toml(String),
    /// A value is out of range or inconsistent.
    #[error("{file}: key `{key}`: {message}")]
    Value {
        /// The config file.
        file: String,
        /// The key.
        key: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// A secret file that others can read.
    #[error(
        "{path}: readable by group or others (mode {mode:o}); a secret must be private: chmod 600 {path}"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralConfig {
    /// `[central]`.
    #[serde(default)]
    pub central: InstanceConfig,
    /// `[postgres]`.
    pub postgres: PostgresConfig,
    /// `[broker]`.
    pub broker: BrokerConfig,
    /// `[signing]`.
    pub signing: SigningConfig,
    /// `[ingest]`.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// `[retention]`.
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// `[retention]`: how long events are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Keep events at least this many days (1..=36500), then drop them a
    /// whole month at a time (a month's partition goes once its last day
    /// is this old). Absent: keep everything.
    pub days: Option<u32>,
}

/// `[central]`: this instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// MQTT client id, unique per instance.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Shared subscription group for events; empty: a plain subscription
    /// (one instance only).
    #[serde(default = "default_share_group")]
    pub share_group: String,
    /// Topic root; gateways publish under `<root>/<gateway-id>/…`.
    #[serde(default = "default_root")]
    pub topic_root: String,
    /// A persistent MQTT session. Default `false`: Mosquitto (2.0.11,
    /// measured) and EMQX keep handing a shared subscription's messages to
    /// a disconnected persistent session, so a killed instance's share
    /// waited for the gateways' resend (p99 27-38 s); with a clean session it
    /// goes to the other instances at once (p99 36–52 ms). `true` only for
    /// a single instance that should find events queued after a restart
    /// (the gateways resend them anyway).
    #[serde(default)]
    pub persistent_session: bool,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self {
            instance: default_instance(),
            share_group: default_share_group(),
            topic_root: default_root(),
            persistent_session: false,
        }
    }
}

/// `[postgres]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// libpq-style connection string without a password, e.g.
    /// `host=/var/run/postgresql dbname=portier user=portier`.
    pub connect: String,
    /// A file holding the password (mode 600), when the server wants one.
    pub password_file: Option<PathBuf>,
    /// TLS to the server: `disable` or `verify-full`. Absent: `disable`
    /// when every host is a unix socket directory, else `verify-full`
    /// (a database on another host is reached over TLS or not at all).
    pub sslmode: Option<SslMode>,
    /// The CA the server's certificate must chain to (PEM; the only root).
    /// Required with `verify-full`.
    pub ca: Option<PathBuf>,
    /// Central's client certificate for PostgreSQL (PEM), optional; with
    /// `key`.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM, mode 600).
    pub key: Option<PathBuf>,
}

/// `[postgres] sslmode`: how central talks to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain: a unix socket, or a network segment you trust.
    Disable,
    /// TLS required; the server's certificate must chain to `ca` and name
    /// the host in `connect` (libpq's `verify-full`). A server without TLS
    /// is refused.
    VerifyFull,
}

impl PostgresConfig {
    /// `connect` with no password file and the default TLS mode (tools
    /// and tests; a service reads `central.toml`).
    pub fn new(connect: String) -> Self {
        Self {
            connect,
            password_file: None,
            sslmode: None,
            ca: None,
            cert: None,
            key: None,
        }
    }

    /// The resolved mode (see [`PostgresConfig::sslmode`]).
    pub fn mode(&self) -> SslMode {
        self.sslmode.unwrap_or_else(|| {
            if self.all_unix_sockets() {
                SslMode::Disable
            } else {
                SslMode::VerifyFull
            }
        })
    }

    fn all_unix_sockets(&self) -> bool {
        self.connect
            .parse::<tokio_postgres::Config>()
            .is_ok_and(|c| {
                !c.get_hosts().is_empty()
                    && c.get_hosts()
                        .iter()
                        .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)))
            })
    }
}

/// `[broker]`: where and who.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Broker host; its certificate must name it (subjectAltName).
    pub host: String,
    /// TLS port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// CA of the broker's certificate (PEM).
    pub ca: PathBuf,
    /// Central's client certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 600).
    pub key: PathBuf,
    /// Largest message sent or received, MiB (snapshots are one message).
    /// A larger incoming message is received anyway (the MQTT client's
    /// limit is MQTT's own, 256 MiB), acknowledged, and quarantined as
    /// `oversized`: never a reconnect loop.
    #[serde(default = "default_max_mib")]
    pub max_message_mib: usize,
}

/// `[signing]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// The ed25519 signing key (64 hex digits, `portier keygen`; mode 600).
    pub key: PathBuf,
    /// Snapshots and deltas are valid this many days from issue.
    #[serde(default = "default_days")]
    pub rules_valid_days: u32,
    /// Commands are valid this many seconds from issue (at most 86400).
    #[serde(default = "default_command_seconds")]
    pub command_valid_seconds: u64,
    /// A signed time beacon to every known gateway this often, seconds
    /// (1..=3600; the gateways' scheduled releases wait for one after a
    /// restart, and their clock is checked against it).
    #[serde(default = "default_beacon_seconds")]
    pub beacon_seconds: u64,
}

/// `[ingest]`: batching.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Rows per transaction, at most.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Wait this long for more deliveries before committing a partial
    /// transaction, milliseconds.
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// A seq more than this far beyond its gateway's acknowledged seq is
    /// quarantined (`events_rejected`, reason `seq_out_of_window`), not
    /// stored: a planted far-future seq can never take the place of the
    /// real event. Must exceed every gateway's `[uplink] window` (how far
    /// an honest gateway sends ahead of its ack; default 20 000).
    #[serde(default = "default_seq_window")]
    pub seq_window: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_rows: default_max_rows(),
            linger_ms: default_linger(),
            seq_window: default_seq_window(),
        }
    }
}

fn default_instance() -> String {
    "portier-central-1".into()
}
fn default_share_group() -> String {
    "portier-central".into()
}
fn default_root() -> String {
    "portier/v1".into()
}
fn default_port() -> u16 {
    8883
}
fn default_max_mib() -> usize {
    256
}
fn default_days() -> u32 {
    30
}
fn default_beacon_seconds() -> u64 {
    30
}
fn default_command_seconds() -> u64 {
    300
}
fn default_max_rows() -> usize {
    10_000
}
fn default_linger() -> u64 {
    5
}
fn default_seq_window() -> u64 {
    100_000
}

impl CentralConfig {
    /// Read, parse and check `path` (relative paths in it are relative to
    /// the file's directory), including the secret files' permissions.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut c = Self::parse(path, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut c.broker.ca,
            &mut c.broker.cert,
            &mut c.broker.key,
            &mut c.signing.key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for p in [
            &mut c.postgres.password_file,
            &mut c.postgres.ca,
            &mut c.postgres.cert,
            &mut c.postgres.key,
        ]
        .into_iter()
        .flatten()
        .filter(|p| p.is_relative())
        {
            *p = base.join(&*p);
        }
        for secret in [Some(&c.broker.key), Some(&c.signing.key)]
            .into_iter()
            .chain([c.postgres.password_file.as_ref(), c.postgres.key.as_ref()])
            .flatten()
        {
            check_private(secret)?;
        }
        Ok(c)
    }

    /// Parse and check the text of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let c: Self = toml::from_str(text).map_err(|e| {
            ConfigError::Toml(crate::rules::source::toml_error(&file, text, &e).to_string())
        })?;
        let bad = |key, message: &str| ConfigError::Value {
            file: file.clone(),
            key,
            message: message.to_owned(),
        };
        if c.central.instance.is_empty() {
            return Err(bad("central.instance", "must not be empty"));
        }
        if c.central.share_group.contains(['/', '+', '#']) {
            return Err(bad(
                "central.share_group",
                "a group name without '/', '+' or '#'",
            ));
        }
        if c.central.topic_root.is_empty() || c.central.topic_root.contains(['+', '#']) {
            return Err(bad("central.topic_root", "a topic without wildcards"));
        }
        if c.postgres.connect.to_ascii_lowercase().contains("password") {
            return Err(bad(
                "postgres.connect",
                "no password in the connection string (it would end up in logs and ps): put it in password_file",
            ));
        }
        check_postgres(&c.postgres).map_err(|(key, m)| bad(key, &m))?;
        if c.signing.command_valid_seconds == 0 || c.signing.command_valid_seconds > 86_400 {
            return Err(bad("signing.command_valid_seconds", "must be 1..=86400"));
        }
        if c.signing.beacon_seconds == 0 || c.signing.beacon_seconds > 3600 {
            return Err(bad("signing.beacon_seconds", "must be 1..=3600"));
        }
        if c.retention.days.is_some_and(|d| !(1..=36_500).contains(&d)) {
            return Err(bad(
                "retention.days",
                "must be 1..=36500 (days events are kept; leave it out to keep everything)",
            ));
        }
        if c.ingest.max_rows == 0 {
            return Err(bad("ingest.max_rows", "must be at least 1"));
        }
        if c.ingest.seq_window < 1_000 || c.ingest.seq_window > 1 << 62 {
            return Err(bad(
                "ingest.seq_window",
                "must be 1000..=2^62 and larger than every gateway's [uplink] window",
            ));
        }
        if c.broker.max_message_mib == 0 || c.broker.max_message_mib > 256 {
            return Err(bad(
                "broker.max_message_mib",
                "must be 1..=256 (MQTT's largest packet is 256 MiB)",
            ));
        }
        Ok(c)
    }

    /// The subscription filter for events (`$share/<group>/<root>/+/events`).
    pub fn events_filter(&self) -> String {
        let f = format!("{}/+/events", self.central.topic_root);
        if self.central.share_group.is_empty() {
            f
        } else {
            format!("$share/{}/{f}", self.central.share_group)
        }
    }

    /// The subscription filter of the urgent lane (`<root>/+/urgent`):
    /// not shared, every instance stores every urgent event (an insert
    /// that finds it stored does nothing).
    pub fn urgent_filter(&self) -> String {
        format!("{}/+/urgent", self.central.topic_root)
    }

    /// The subscription filter for status: every instance sees every
    /// gateway's status (not shared: retained messages go to each).
    pub fn status_filter(&self) -> String {
        format!("{}/+/status", self.central.topic_root)
    }

    /// The broker section in the shape the gateway's MQTT helpers take.
    pub fn uplink(&self) -> crate::uplink::UplinkConfig {
        crate::uplink::UplinkConfig {
            host: self.broker.host.clone(),
            port: self.broker.port,
            ca: self.broker.ca.clone(),
            cert: self.broker.cert.clone(),
            key: self.broker.key.clone(),
            topic_prefix: None,
            batch: 1,
            batch_kib: 1,
            window: 1,
            max_snapshot_mib: self.broker.max_message_mib,
            max_delta_kib: self.broker.max_message_mib.saturating_mul(1024),
            max_firmware_mib: self.broker.max_message_mib,
            resend_after_seconds: 10,
            status_interval_seconds: 60,
        }
    }
}

/// `[postgres]`: the connection string parses, carries no TLS settings of
/// its own (they are keys here, typed), and the TLS keys fit the mode.
fn check_postgres(pg: &PostgresConfig) -> Result<(), (&'static str, String)> {
    let parsed: tokio_postgres::Config = pg
        .connect
        .parse()
        .map_err(|e: tokio_postgres::Error| ("postgres.connect", e.to_string()))?;
    let lower = pg.connect.to_ascii_lowercase();
    if lower.contains("sslmode") {
        return Err((
            "postgres.connect",
            "no sslmode in the connection string: set [postgres] sslmode (\"disable\" or \"verify-full\") and ca".into(),
        ));
    }
    let unix = parsed
        .get_hosts()
        .iter()
        .any(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
    match pg.mode() {
        SslMode::Disable => {
            if pg.ca.is_some() || pg.cert.is_some() || pg.key.is_some() {
                return Err((
                    "postgres.sslmode",
                    "is \"disable\" but ca / cert / key are set: set sslmode = \"verify-full\" to use them".into(),
                ));
            }
        }
        SslMode::VerifyFull => {
            if unix {
                return Err((
                    "postgres.sslmode",
                    "\"verify-full\" needs TCP hosts (host=db.campus.example); a unix socket is local: use \"disable\"".into(),
                ));
            }
            if pg.ca.is_none() {
                let why = if pg.sslmode.is_none() {
                    " (the default for a database reached over TCP; set sslmode = \"disable\" only on a network segment you trust)"
                } else {
                    ""
                };
                return Err((
                    "postgres.ca",
                    format!(
                        "required with sslmode = \"verify-full\"{why}: the CA file the server's certificate chains to"
                    ),
                ));
            }
        }
    }
    if pg.cert.is_some() != pg.key.is_some() {
        return Err((
            if pg.cert.is_some() {
                "postgres.key"
            } else {
                "postgres.cert"
            },
            "cert and key come together (the client certificate and its private key)".into(),
        ));
    }
    Ok(())
}

/// Refuse a secret file that group or others can read.
pub fn check_private(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[postgres]\nconnect = \"host=/tmp dbname=portier\"\n\
        [broker]\nhost = \"localhost\"\nca = \"ca.crt\"\ncert = \"c.crt\"\nkey = \"c.key\"\n\
        [signing]\nkey = \"s.key\"\n";

    #[test]
    fn defaults_and_filters() {
        let c = CentralConfig::parse(Path::new("c.toml"), MIN).unwrap();
        assert_eq!(
            c.events_filter(),
            "$share/portier-central/portier/v1/+/events"
        );
        assert_eq!(c.status_filter(), "portier/v1/+/status");
        assert_eq!(c.broker.port, 8883);
    }

    #[test]
    fn errors_name_the_key() {
        let e = CentralConfig::parse(
            Path::new("/etc/c.toml"),
            &MIN.replace("dbname=portier", "dbname=portier password=x"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/etc/c.toml") && e.contains("postgres.connect"),
            "{e}"
        );
        let e = CentralConfig::parse(
            Path::new("/etc/c.toml"),
            &format!("{MIN}[ingest]\nmax_rowz = 3\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/etc/c.toml:") && e.contains("max_rowz"), "{e}");
    }

    #[test]
    fn the_example_parses() {
        let text = include_str!("../../config/central.example.toml");
        let c = CentralConfig::parse(Path::new("central.example.toml"), text).unwrap();
        assert_eq!(c.central.share_group, "portier-central");
        assert_eq!(c.ingest.max_rows, 10_000);
        assert_eq!(c.ingest.seq_window, 100_000);
        let e = CentralConfig::parse(
            Path::new("c.toml"),
            &format!("{MIN}[ingest]\nseq_window = 10\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ingest.seq_window"), "{e}");
    }

    #[test]
    fn tls_to_postgres_is_typed_and_checked() {
        let with = |pg: &str| {
            CentralConfig::parse(
                Path::new("c.toml"),
                &MIN.replace("connect = \"host=/tmp dbname=portier\"", pg),
            )
        };
        // A unix socket: plain by default.
        assert_eq!(
            with("connect = \"host=/tmp\"").unwrap().postgres.mode(),
            SslMode::Disable
        );
        // Over TCP: verify-full by default, which needs the CA.
        let e = with("connect = \"host=db.example\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("postgres.ca") && e.contains("verify-full"),
            "{e}"
        );
        let c = with("connect = \"host=db.example\"\nca = \"db-ca.crt\"").unwrap();
        assert_eq!(c.postgres.mode(), SslMode::VerifyFull);
        let c = with("connect = \"host=db.example\"\nsslmode = \"disable\"").unwrap();
        assert_eq!(c.postgres.mode(), SslMode::Disable);
        // libpq's unverified modes are not offered; the key is named.
        let e = with("connect = \"host=db.example\"\nsslmode = \"require\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslmode") && e.contains("verify-full"), "{e}");
        // TLS settings belong in their keys, not the connection string.
        let e = with("connect = \"host=db.example sslmode=require\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("postgres.connect") && e.contains("sslmode"),
            "{e}"
        );
        let e = with("connect = \"host=/tmp\"\nsslmode = \"verify-full\"\nca = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("postgres.sslmode") && e.contains("unix socket"),
            "{e}"
        );
        let e = with("connect = \"host=db.example\"\nca = \"x\"\ncert = \"c.crt\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("postgres.key"), "{e}");
        let e = with("connect = \"host=/tmp\"\nca = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("postgres.sslmode"), "{e}");
    }

    #[test]
    fn retention_days_are_bounded() {
        let with = |t: &str| CentralConfig::parse(Path::new("c.toml"), &format!("{MIN}{t}"));
        assert_eq!(with("").unwrap().retention.days, None);
        assert_eq!(
            with("[retention]\ndays = 400\n").unwrap().retention.days,
            Some(400)
        );
        for bad in ["0", "36501"] {
            let e = with(&format!("[retention]\ndays = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("retention.days") && e.contains("1..=36500"),
                "{e}"
            );
        }
        let e = with("[retention]\ndays = -1\n").unwrap_err().to_string();
        assert!(e.contains("days"), "{e}");
    }

    #[test]
    fn secrets_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("k");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_private(&f).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_private(&f).unwrap();
    }
}
