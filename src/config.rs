//! The daemon configuration file (TOML): the parts the rules side needs —
//! `[gateway]` (id, building, state directory) and `[trust]` (central public
//! key files). Other sections are left to their owners and ignored here.
//!
//! Guarantees: every error names the file, the line and the key; relative
//! paths are resolved against the config file's directory; trusted keys are
//! loaded and checked at load time.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::rules::TrustedKeys;
use crate::rules::source::{SourceError, toml_error};

/// Configuration errors.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: {source}")]
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
pub struct Config {
    /// `[gateway]`.
    pub gateway: Gateway,
    /// `[trust]`.
    pub trust: Trust,
}

impl Config {
    /// Parse config text; `file` names it in errors and anchors relative paths.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let name = file.display().to_string();
        let mut c: Config = toml::from_str(text).map_err(|e| toml_error(&name, text, &e))?;
        let base = file.parent().unwrap_or(Path::new("."));
        c.gateway.state_dir = base.join(&c.gateway.state_dir);
        for k in &mut c.trust.central_keys {
            *k = base.join(&*k);
        }
        Ok(c)
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
            let text = std::fs::read_to_string(p).map_err(|e| err(e.to_string()))?;
            let bytes = read_hex32(&text).map_err(err)?;
            keys.add_bytes(&bytes).map_err(|e| err(e.to_string()))?;
        }
        Ok(keys)
    }
}

/// Parse 64 hex digits (surrounding whitespace allowed) into 32 bytes.
pub fn read_hex32(text: &str) -> Result<[u8; 32], String> {
    let v = hex::decode(text.trim()).map_err(|e| format!("not hex: {e}"))?;
    v.try_into()
        .map_err(|v: Vec<u8>| format!("expected 32 bytes (64 hex digits), found {}", v.len()))
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
}
