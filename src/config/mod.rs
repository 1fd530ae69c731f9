//! The daemon configuration file (TOML), documented key by key in
//! `config/portier.example.toml`: `[gateway]`, `[trust]`, `[presence]`,
//! `[[bus]]` with `[[bus.pd]]`, and `[[door]]` (see [`site`]).
//!
//! Guarantees: every error names the file, the line and the key; relative
//! paths are resolved against the config file's directory; cross-references
//! (doors → PDs), trusted keys and PD key files are checked by
//! [`Config::load`] / [`Config::check`], before anything is opened.

pub mod areas;
pub mod port;
pub mod site;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use crate::osdp::secure::Scbk;
use crate::osdp::{KeyPolicy, PdConfig, Timing};
use crate::rules::TrustedKeys;
use crate::rules::source::{SourceError, toml_error};
pub use crate::secret_files::{read_hint, unreadable_fix, warn_if_exposed};
use port::PortSettings;
use site::{BusConfig, DoorEntry, PdPlace, Site, SiteError};

/// Configuration errors.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read (the message says the fix).
    #[error("{file}: {}", read_hint(Path::new(file), source.kind()))]
    Read {
        /// File.
        file: String,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML syntax or a missing / mistyped key.
    #[error(transparent)]
    Toml(#[from] SourceError),
    /// A public key file is unusable.
    #[error("{file}: key `trust.central_keys`: {path}: {message}")]
    Key {
        /// Config file.
        file: String,
        /// Key file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A certificate or key file of `[uplink]` is unusable.
    #[error("{file}: section `[uplink]`: {message}")]
    Uplink {
        /// Config file.
        file: String,
        /// What is wrong (names the file).
        message: String,
    },
    /// A value is wrong or a reference does not resolve.
    #[error("{file}:{line}: key `{key}`: {message}")]
    Invalid {
        /// Config file.
        file: String,
        /// 1-based line.
        line: usize,
        /// Dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A PD key file holds SCBK-D, the OSDP default key: every vendor and
    /// capture tool knows it, so the reader would have no secret at all.
    #[error(
        "holds the OSDP default key SCBK-D (30..3F), which is no secret: \
         give the reader its own key with `portier reader install-key`"
    )]
    DefaultScbk,
    /// A PD key file holds sixteen zero bytes: an unwritten or zeroed file.
    #[error(
        "holds an all-zero key: give the reader its own key with \
         `portier reader install-key`"
    )]
    ZeroScbk,
    /// A PD key file cannot be read (the message says the fix).
    #[error("{}", unreadable_fix(path, source))]
    ScbkRead {
        /// Key file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A PD key file is not hex digits.
    #[error("not hex ({source}): a key file holds 32 hex digits")]
    ScbkHex {
        /// Cause.
        #[source]
        source: hex::FromHexError,
    },
    /// A PD key file decodes to another length than the 16 bytes of an SCBK.
    #[error("{len} bytes: a key file holds exactly 16 bytes (32 hex digits)")]
    ScbkLength {
        /// The length found.
        len: usize,
    },
}

/// `[gateway]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Gateway id (must match snapshots).
    pub id: String,
    /// Building (must match snapshots).
    pub building: String,
    /// sled state directory.
    pub state_dir: PathBuf,
    /// IANA time zone of the building (logs and the status page; decisions
    /// use the snapshot's, and a mismatch is reported).
    pub time_zone: Option<Spanned<String>>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Level or filter directives (`info`, `debug`, `portier=debug,warn`).
    /// `RUST_LOG` overrides it. Reloaded on SIGHUP.
    pub level: Option<Spanned<String>>,
}

/// `[journal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Events kept until central acknowledges them, at most. When full,
    /// routine events are dropped (counted, alarmed); alarms are kept.
    #[serde(default = "default_max_events")]
    pub max_events: u64,
    /// Space kept free on the state directory's disk for alarms, in MiB:
    /// below it, routine events are dropped (counted) and the doors go on.
    #[serde(default = "default_reserve_mib")]
    pub reserve_mib: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            reserve_mib: default_reserve_mib(),
        }
    }
}

fn default_reserve_mib() -> u64 {
    64
}

fn default_max_events() -> u64 {
    crate::journal::DEFAULT_MAX_EVENTS
}

/// `[presence]`: who is inside after hours.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceConfig {
    /// The rules' schedule that means "office hours"; passages outside it
    /// are journaled as presence events.
    #[serde(default = "default_office_hours")]
    pub office_hours_schedule: String,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            office_hours_schedule: default_office_hours(),
        }
    }
}

fn default_office_hours() -> String {
    "office-hours".into()
}

/// `[trust]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// Files with central public keys (64 hex digits each).
    pub central_keys: Vec<PathBuf>,
}

/// The configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[gateway]`.
    pub gateway: Gateway,
    /// `[trust]`.
    pub trust: Trust,
    /// `[presence]`.
    #[serde(default)]
    pub presence: PresenceConfig,
    /// `[log]`.
    #[serde(default)]
    pub log: LogConfig,
    /// `[journal]`.
    #[serde(default)]
    pub journal: JournalConfig,
    /// `[uplink]`: the broker; without it the gateway runs offline.
    pub uplink: Option<crate::uplink::UplinkConfig>,
    /// `[admin]`: the technician's HTTPS page; without it, none.
    pub admin: Option<crate::admin::AdminConfig>,
    /// `[feedback]`.
    #[serde(default)]
    pub feedback: Option<Spanned<site::FeedbackConfig>>,
    /// `[[bus]]`.
    #[serde(default, rename = "bus")]
    pub buses: Vec<BusConfig>,
    /// `[[door]]`.
    #[serde(default, rename = "door")]
    pub doors: Vec<DoorEntry>,
    /// `[[interlock]]`: airlocks.
    #[serde(default, rename = "interlock")]
    pub interlocks: Vec<areas::InterlockEntry>,
    /// `[[fire_alarm]]`: fire panel inputs and the escape doors they release.
    #[serde(default, rename = "fire_alarm")]
    pub fire_alarms: Vec<site::FireAlarmEntry>,
    /// Config file path (for errors).
    #[serde(skip)]
    pub file: PathBuf,
    /// Config text (for error lines).
    #[serde(skip)]
    text: String,
    /// PDs by name, after [`Config::check`].
    #[serde(skip)]
    pub pds: HashMap<String, PdPlace>,
}

/// One bus, ready to open: port settings, timing and its PDs with keys.
#[derive(Debug, Clone)]
pub struct BusPlan {
    /// Bus name.
    pub name: String,
    /// Serial port.
    pub port: PortSettings,
    /// OSDP timing.
    pub timing: Timing,
    /// PDs with their key policy.
    pub pds: Vec<PdConfig>,
    /// PD names by address (for logs and the status page).
    pub names: HashMap<u8, String>,
}

impl Config {
    /// Parse config text; `file` names it in errors and anchors relative paths.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let name = file.display().to_string();
        let mut c: Config = toml::from_str(text).map_err(|e| toml_error(&name, text, &e))?;
        c.file = file.to_owned();
        c.text = text.to_owned();
        let base = file.parent().unwrap_or(Path::new("."));
        c.gateway.state_dir = base.join(&c.gateway.state_dir);
        for k in &mut c.trust.central_keys {
            *k = base.join(&*k);
        }
        if let Some(a) = &mut c.admin {
            a.resolve_paths(base);
        }
        if let Some(u) = &mut c.uplink {
            for p in [&mut u.ca, &mut u.cert, &mut u.key] {
                *p = base.join(&*p);
            }
        }
        for bus in &mut c.buses {
            for pd in &mut bus.pds {
                if let Some(k) = &mut pd.key_file {
                    *k.get_mut() = base.join(k.get_ref());
                }
            }
        }
        if let Some(tz) = &c.gateway.time_zone
            && jiff::tz::TimeZone::get(tz.get_ref()).is_err()
        {
            return Err(c.invalid(SiteError {
                at: tz.span().start,
                key: "gateway.time_zone".into(),
                message: format!("{:?} is not an IANA time zone", tz.get_ref()),
            }));
        }
        if let Some(level) = &c.log.level
            && let Err(e) = tracing_subscriber::EnvFilter::try_new(level.get_ref())
        {
            return Err(c.invalid(SiteError {
                at: level.span().start,
                key: "log.level".into(),
                message: e.to_string(),
            }));
        }
        let site = Site {
            buses: c.buses.clone(),
            doors: c.doors.clone(),
            fire_alarms: c.fire_alarms.clone(),
        };
        c.pds = site.check().map_err(|e| c.invalid(e))?;
        areas::check(&c.doors, &c.interlocks).map_err(|e| c.invalid(e))?;
        if let Some(f) = &c.feedback
            && let Err(e) = f.get_ref().table()
        {
            return Err(c.invalid(SiteError {
                at: f.span().start,
                key: "feedback".into(),
                message: e.to_string(),
            }));
        }
        Ok(c)
    }

    fn invalid(&self, e: SiteError) -> ConfigError {
        let at = e.at.min(self.text.len());
        ConfigError::Invalid {
            file: self.file.display().to_string(),
            line: self.text[..at].matches('\n').count() + 1,
            key: e.key,
            message: e.message,
        }
    }

    /// Everything [`Config::load`] checks, plus the files it names: trusted
    /// keys and PD key files. What `portier check-config` runs.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.trusted_keys(&self.file)?;
        self.bus_plans()?;
        if let Some(u) = &self.uplink {
            crate::uplink::tls::client_config(u).map_err(|e| ConfigError::Uplink {
                file: self.file.display().to_string(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Top-level sections that differ from `other`'s, by name. What SIGHUP
    /// can apply in place (`log`, `feedback`) is left out: everything
    /// listed needs a restart.
    pub fn changes_needing_restart(&self, other: &Config) -> Vec<String> {
        let table = |text: &str| text.parse::<toml::Table>().unwrap_or_default();
        let (a, b) = (table(&self.text), table(&other.text));
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| !matches!(k.as_str(), "log" | "feedback"))
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect()
    }

    /// Where the rules store lives: `<state_dir>/rules`.
    pub fn rules_dir(&self) -> PathBuf {
        self.gateway.state_dir.join("rules")
    }

    /// Where the remote-command replay guard (and, in earlier versions, the sled
    /// event journal) lives: `<state_dir>/events`.
    pub fn events_dir(&self) -> PathBuf {
        self.gateway.state_dir.join("events")
    }

    /// Where the event journal and standing state live:
    /// `<state_dir>/journal` (segment files, see [`crate::journal`]).
    pub fn journal_dir(&self) -> PathBuf {
        self.gateway.state_dir.join("journal")
    }

    /// The reader feedback patterns (checked at load).
    pub fn feedback_table(&self) -> crate::site::outputs::FeedbackTable {
        self.feedback
            .as_ref()
            .and_then(|f| f.get_ref().table().ok())
            .unwrap_or_default()
    }

    /// The doors as the building core wants them.
    pub fn door_wiring(&self) -> Vec<crate::site::DoorWiring> {
        let site = Site {
            buses: Vec::new(),
            doors: self.doors.clone(),
            fire_alarms: Vec::new(),
        };
        site.wiring(&self.pds)
    }

    /// The doors' areas (`area_in`/`area_out`).
    pub fn door_areas(&self) -> Vec<(crate::ids::DoorId, crate::site::areas::DoorAreas)> {
        areas::door_areas(&self.doors)
    }

    /// The interlock groups (`[[interlock]]`).
    pub fn interlocks(&self) -> Vec<crate::site::interlock::Interlock> {
        areas::interlocks(&self.interlocks)
    }

    /// The fire-alarm inputs as the building core wants them.
    pub fn fire_alarm_wiring(&self) -> Vec<crate::site::building::FireAlarmWiring> {
        let site = Site {
            buses: Vec::new(),
            doors: Vec::new(),
            fire_alarms: self.fire_alarms.clone(),
        };
        site.fire_alarm_wiring(&self.pds)
    }

    /// Every PD by name: its bus, address and key file (reader upkeep).
    pub fn pd_places(
        &self,
    ) -> Vec<(
        crate::ids::ReaderId,
        crate::upkeep::ReaderPlace,
        Option<PathBuf>,
    )> {
        let mut places = Vec::new();
        for bus in &self.buses {
            for pd in &bus.pds {
                let key_file = pd.key_file.as_ref().map(|k| k.get_ref().clone());
                let place = crate::upkeep::ReaderPlace {
                    bus: bus.name.get_ref().as_str().into(),
                    address: *pd.address.get_ref(),
                    secure: key_file.is_some(),
                };
                places.push((pd.name.get_ref().as_str().into(), place, key_file));
            }
        }
        places
    }

    /// The buses, with PD keys read from their files.
    pub fn bus_plans(&self) -> Result<Vec<BusPlan>, ConfigError> {
        let mut plans = Vec::new();
        for bus in &self.buses {
            let mut pds = Vec::new();
            let mut names = HashMap::new();
            for pd in &bus.pds {
                let key = match &pd.key_file {
                    Some(path) => {
                        let refused = |e: ConfigError| {
                            self.invalid(SiteError {
                                at: path.span().start,
                                key: "bus.pd.key_file".into(),
                                message: format!("{}: {e}", path.get_ref().display()),
                            })
                        };
                        read_scbk_policy(path.get_ref()).map_err(refused)?
                    }
                    None => KeyPolicy::Plaintext,
                };
                pds.push(PdConfig {
                    address: *pd.address.get_ref(),
                    key,
                });
                names.insert(*pd.address.get_ref(), pd.name.get_ref().clone());
            }
            plans.push(BusPlan {
                name: bus.name.get_ref().clone(),
                port: PortSettings {
                    path: bus.port.clone(),
                    baud: *bus.baud.get_ref(),
                    rs485: bus.rs485.into(),
                    suppress_echo: bus.suppress_echo,
                },
                timing: Timing {
                    poll_interval: Duration::from_millis(bus.poll_interval_ms),
                    ..Timing::default()
                },
                pds,
                names,
            });
        }
        Ok(plans)
    }

    /// Read and parse a config file.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.display().to_string(),
            source,
        })?;
        Self::parse(file, &text)
    }

    /// Load the trusted central keys named in `[trust]`.
    pub fn trusted_keys(&self, file: &Path) -> Result<TrustedKeys, ConfigError> {
        let mut keys = TrustedKeys::new();
        for p in &self.trust.central_keys {
            let err = |message: String| ConfigError::Key {
                file: file.display().to_string(),
                path: p.display().to_string(),
                message,
            };
            let text = std::fs::read_to_string(p).map_err(|e| err(unreadable_fix(p, &e)))?;
            let bytes = read_hex32(&text).map_err(|e| err(e.to_string()))?;
            keys.add_bytes(&bytes).map_err(|e| err(e.to_string()))?;
        }
        Ok(keys)
    }
}

/// Refuse a key no reader should be configured with: SCBK-D (`30 31 … 3F`,
/// the OSDP default every vendor and every capture tool knows; a reader
/// left on it has no secret at all) and the all-zero key (an unwritten or
/// zeroed file). Only `portier reader install-key` uses SCBK-D, for the
/// moment of the install.
pub fn check_configured_scbk(key: &Scbk) -> Result<(), ConfigError> {
    if key.0 == crate::osdp::secure::SCBK_DEFAULT.0 {
        return Err(ConfigError::DefaultScbk);
    }
    if key.0 == [0; 16] {
        return Err(ConfigError::ZeroScbk);
    }
    Ok(())
}

/// Where a key rotation keeps the new key until the reader has proved it
/// holds it: `F.next` beside the key file `F` (see `docs/doors.md`, "Key
/// rotation").
pub fn pending_scbk_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".next");
    name.into()
}

/// A keyed reader's policy: its key file, and when a rotation was cut
/// short (`F.next` exists), both keys, tried in turn at bring-up.
pub fn read_scbk_policy(path: &Path) -> Result<KeyPolicy, ConfigError> {
    let current = read_scbk_file(path)?;
    check_configured_scbk(&current)?;
    let next = pending_scbk_path(path);
    if !next.exists() {
        return Ok(KeyPolicy::Secure(current));
    }
    let pending = read_scbk_file(&next)?;
    check_configured_scbk(&pending)?;
    Ok(KeyPolicy::Rotating { current, pending })
}

/// Read an OSDP key file: the 16-byte SCBK as 32 hex digits (surrounding
/// whitespace allowed).
pub fn read_scbk_file(path: &Path) -> Result<Scbk, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ScbkRead {
        path: path.to_owned(),
        source,
    })?;
    warn_if_exposed(path);
    let bytes = hex::decode(text.trim()).map_err(|source| ConfigError::ScbkHex { source })?;
    let key: [u8; 16] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| ConfigError::ScbkLength { len: b.len() })?;
    Ok(Scbk(key))
}

/// Why 32 bytes of hex (an ed25519 key file) could not be read.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum HexKeyError {
    /// Not hex digits.
    #[error("not hex: {0}")]
    NotHex(#[source] hex::FromHexError),
    /// Hex, but not 32 bytes.
    #[error("expected 32 bytes (64 hex digits), found {0}")]
    Length(usize),
}

/// Parse 64 hex digits (surrounding whitespace allowed) into 32 bytes.
pub fn read_hex32(text: &str) -> Result<[u8; 32], HexKeyError> {
    let v = hex::decode(text.trim()).map_err(HexKeyError::NotHex)?;
    v.try_into()
        .map_err(|v: Vec<u8>| HexKeyError::Length(v.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_line_key() {
        let t =
            "[gateway]\nid = \"g\"\nbuilding = 3\nstate_dir = \"s\"\n[trust]\ncentral_keys = []\n";
        let e = Config::parse(Path::new("/etc/p.toml"), t)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/p.toml:3: key `building`"), "{e}");
        let t = "[gateway]\nid = \"g\"\nbuilding = \"b\"\nstate_dir = \"s\"\n[trust]\ncentral_keys = []\n";
        let c = Config::parse(Path::new("/etc/p.toml"), t).unwrap();
        assert_eq!(c.gateway.state_dir, Path::new("/etc/s"));
    }

    #[test]
    fn the_example_config_parses_and_names_missing_key_files() {
        let file = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/portier.example.toml"
        ));
        let c = Config::load(file).unwrap();
        assert_eq!(c.buses.len(), 1);
        assert_eq!(c.doors.len(), 4);
        assert_eq!(c.door_areas().len(), 3);
        assert_eq!(c.interlocks()[0].doors.len(), 2);
        let wiring = c.door_wiring();
        assert_eq!(wiring[1].id, "side-entrance");
        assert_eq!(wiring[1].readers[0].id, "side-reader");
        let e = c.bus_plans().unwrap_err().to_string();
        assert!(
            e.contains("key `bus.pd.key_file`") && e.contains("entrance-reader.scbk"),
            "{e}"
        );
    }

    /// SCBK-D and the all-zero key are refused as a PD's configured key,
    /// naming file, line and key; an unreadable key file says the fix.
    #[test]
    fn default_and_zero_pd_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("p.toml");
        let plans = |key_text: &str| {
            std::fs::write(dir.path().join("r1.scbk"), key_text).unwrap();
            let t = "[gateway]\nid = \"g\"\nbuilding = \"b\"\nstate_dir = \"s\"\n[trust]\n\
                     central_keys = []\n[[bus]]\nname = \"b1\"\nport = \"/dev/null\"\n\
                     [[bus.pd]]\nname = \"r1\"\naddress = 1\nrole = \"reader\"\n\
                     key_file = \"r1.scbk\"\n";
            Config::parse(&cfg, t).unwrap().bus_plans().map(|_| ())
        };
        let want = format!("{}:14: key `bus.pd.key_file`: ", cfg.display());
        for (text, what) in [
            ("303132333435363738393A3B3C3D3E3F\n", "SCBK-D"),
            ("303132333435363738393a3b3c3d3e3f", "SCBK-D"),
            (&"00".repeat(16), "all-zero"),
        ] {
            let e = plans(text).unwrap_err().to_string();
            assert!(e.starts_with(&want), "{e}");
            assert!(e.contains("r1.scbk") && e.contains(what), "{e}");
            assert!(e.contains("portier reader install-key"), "{e}");
        }
        plans("4A1C7E0D9B3F5A6C8E2D1B0F7A9C3E5D").unwrap();
        // A directory where the key file should be: unreadable for root too.
        std::fs::remove_file(dir.path().join("r1.scbk")).unwrap();
        std::fs::create_dir(dir.path().join("r1.scbk")).unwrap();
        let e = Config::parse(
            &cfg,
            "[gateway]\nid = \"g\"\nbuilding = \"b\"\nstate_dir = \"s\"\n[trust]\n\
             central_keys = []\n[[bus]]\nname = \"b1\"\nport = \"/dev/null\"\n\
             [[bus.pd]]\nname = \"r1\"\naddress = 1\nrole = \"reader\"\nkey_file = \"r1.scbk\"\n",
        )
        .unwrap()
        .bus_plans()
        .unwrap_err()
        .to_string();
        assert!(e.starts_with(&want) && e.contains("directory"), "{e}");
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let fix = unreadable_fix(Path::new("/etc/portier/keys/r1.scbk"), &denied);
        assert!(
            fix.contains(
                "chgrp portier /etc/portier/keys/r1.scbk; chmod 0640 /etc/portier/keys/r1.scbk"
            ),
            "{fix}"
        );
    }

    fn site_error(extra: &str) -> String {
        let t = format!(
            "[gateway]\nid = \"g\"\nbuilding = \"b\"\nstate_dir = \"s\"\n[trust]\ncentral_keys = []\n\
             [[bus]]\nname = \"b1\"\nport = \"/dev/null\"\n\
             [[bus.pd]]\nname = \"r1\"\naddress = 1\nrole = \"reader\"\nplaintext = true\n{extra}"
        );
        Config::parse(Path::new("/etc/p.toml"), &t)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn semantic_errors_name_line_and_key() {
        let e = site_error(
            "[[door]]\nid = \"d\"\nkind = \"standard\"\nstrike = { pd = \"nope\", output = 0 }\n",
        );
        assert!(
            e.starts_with("/etc/p.toml:18: key `door.strike.pd`: no PD named \"nope\" (known: r1)"),
            "{e}"
        );
        let e =
            site_error("[[bus.pd]]\nname = \"r2\"\naddress = 1\nrole = \"io\"\nplaintext = true\n");
        assert!(
            e.starts_with("/etc/p.toml:17: key `bus.pd.address`: address 1 used twice"),
            "{e}"
        );
        let e = site_error("[[bus.pd]]\nname = \"r2\"\naddress = 2\nrole = \"io\"\n");
        assert!(
            e.starts_with("/etc/p.toml:16: key `bus.pd.key_file`"),
            "{e}"
        );
        let e = site_error("[[door]]\nid = \"d\"\nkind = \"standard\"\n");
        assert!(
            e.contains(":16: key `door.strike`: a standard door needs"),
            "{e}"
        );
        let e = site_error("[[door]]\nid = \"d\"\nkind = \"sliding\"\n");
        assert!(e.contains(":17: key `kind`"), "{e}");
        let e = site_error(
            "[[door]]\nid = \"d\"\nkind = \"revolving\"\nrelease_in = { pd = \"r1\", output = 0 }\ncontact = { pd = \"r1\", input = 0 }\n",
        );
        assert!(
            e.contains("key `door.kind`: strike/contact/exit_button are for standard doors"),
            "{e}"
        );
    }

    #[test]
    fn feedback_patterns_are_configurable_but_must_stay_distinct() {
        let base = "[gateway]\nid = \"g\"\nbuilding = \"b\"\nstate_dir = \"s\"\n[trust]\ncentral_keys = []\n";
        let c = Config::parse(
            Path::new("/etc/p.toml"),
            &format!("{base}[feedback.grant]\ncolor = \"blue\"\nbeeps = 2\n"),
        )
        .unwrap();
        let t = c.feedback_table();
        assert_eq!(t.grant.color, crate::osdp::message::LedColor::Blue);
        assert_eq!(t.grant.beeps, 2);
        assert_eq!(t.deny, crate::site::outputs::FeedbackTable::default().deny);
        let same = "[feedback.lockdown]\ncolor = \"red\"\nled_on_ms = 3000\nled_off_ms = 0\nbeep_on_ms = 1000\nbeep_off_ms = 0\nbeeps = 1\n";
        let e = Config::parse(Path::new("/etc/p.toml"), &format!("{base}{same}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key `feedback`: patterns `deny` and `lockdown` look and sound the same"),
            "{e}"
        );
    }
}
