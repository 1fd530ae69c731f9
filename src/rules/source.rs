//! The human-readable TOML rules format (`portier snapshot build`) and the
//! TOML change-set format (`portier snapshot delta`), parsed from text.
//!
//! Guarantees: every parse error names the file, the line and (where the
//! TOML has one) the key; a parsed file is checked for dangling names before
//! it is signed.

use jiff::Timestamp;
use serde::Deserialize;
use thiserror::Error;

use super::envelope::Block;
use super::{Credential, CredentialKey, Delta, Header, RulesError, SCHEMA, Snapshot};

/// A rules or changes file could not be used.
#[derive(Debug, Error)]
pub enum SourceError {
    /// TOML syntax or shape error.
    #[error("{file}:{line}: {key}{message}")]
    Toml {
        /// File name.
        file: String,
        /// 1-based line.
        line: usize,
        /// `key `x`: ` prefix, or empty.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Names that do not resolve.
    #[error("{file}: {source}")]
    Rules {
        /// File name.
        file: String,
        /// The problem.
        source: RulesError,
    },
}

/// Turn a TOML error into file / line / key.
pub fn toml_error(file: &str, text: &str, err: &toml::de::Error) -> SourceError {
    let start = err.span().map_or(0, |s| s.start.min(text.len()));
    let line = text[..start].matches('\n').count() + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim().trim_start_matches('[').trim())
        .filter(|k| !k.is_empty() && !k.starts_with('#'))
        .map(|k| format!("key `{k}`: "))
        .unwrap_or_default();
    SourceError::Toml {
        file: file.to_owned(),
        line,
        key,
        message: err.message().trim().to_owned(),
    }
}

/// The line of a value that does not hold together with the rest: the
/// first line from the table (or array) named by `key` (else its first
/// part) on that holds `"value"` quoted or as a key (`value = …`); the
/// table's line, or 1, when there is none.
fn line_of(text: &str, key: &str, value: &str) -> usize {
    let opens = |name: &str| {
        text.lines().position(|l| {
            let l = l.trim_start().trim_start_matches('[').trim_start();
            l.starts_with(name)
        })
    };
    let first = key.split('.').next().unwrap_or(key);
    let from = opens(key).or_else(|| opens(first)).unwrap_or(0);
    let quoted = format!("{value:?}");
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| {
            l.contains(&quoted) || l.split_once('=').is_some_and(|(k, _)| k.trim() == value)
        })
        .map_or(from + 1, |(i, _)| i + 1)
}

/// Keys of a [`Snapshot`] that the command line sets, never the rules file.
const SET_BY_BUILD: [&str; 4] = ["schema", "version", "issued_at", "expires_at"];

/// Parse a rules file (a [`Snapshot`] without `schema`, `version` and
/// times) into a snapshot with the given version and times, and check it
/// holds together.
pub fn parse_rules(
    file: &str,
    text: &str,
    version: u64,
    issued_at: Timestamp,
    expires_at: Timestamp,
) -> Result<Snapshot, SourceError> {
    let mut snap: Snapshot = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    let table: toml::Table = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    if let Some(key) = SET_BY_BUILD.iter().find(|k| table.contains_key(**k)) {
        let line = text
            .lines()
            .position(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == *key))
            .map_or(1, |i| i + 1);
        return Err(SourceError::Toml {
            file: file.to_owned(),
            line,
            key: format!("key `{key}`: "),
            message: "set by `portier snapshot build`, not in the rules file".into(),
        });
    }
    snap.schema = SCHEMA;
    snap.version = version;
    snap.issued_at = issued_at;
    snap.expires_at = expires_at;
    let rules = |source| SourceError::Rules {
        file: file.to_owned(),
        source,
    };
    let header = Header::new(snap.without_credentials()).map_err(|e| match e {
        RulesError::At {
            key,
            value,
            message,
        } => SourceError::Toml {
            file: file.to_owned(),
            line: line_of(text, &key, &value),
            key: format!("key `{key}`: "),
            message,
        },
        other => rules(other),
    })?;
    let mut seen = std::collections::BTreeSet::new();
    for c in &snap.credentials {
        header.check_credential(c).map_err(rules)?;
        if !seen.insert(&c.key) {
            return Err(rules(RulesError::Reference(format!(
                "credential {} listed twice",
                c.key
            ))));
        }
    }
    Ok(snap)
}

/// The changes file of `portier snapshot delta`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesFile {
    /// Gateway id.
    pub gateway_id: String,
    /// Building.
    pub building: String,
    /// Blocks.
    #[serde(default)]
    pub blocks: Vec<Block>,
    /// Unblocks.
    #[serde(default)]
    pub unblocks: Vec<CredentialKey>,
    /// Upserts.
    #[serde(default)]
    pub upserts: Vec<Credential>,
    /// Removals.
    #[serde(default)]
    pub removals: Vec<CredentialKey>,
}

/// Parse a changes file into a delta.
pub fn parse_changes(
    file: &str,
    text: &str,
    base_version: u64,
    version: u64,
    issued_at: Timestamp,
    expires_at: Timestamp,
) -> Result<Delta, SourceError> {
    let c: ChangesFile = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    Ok(Delta {
        base_version,
        version,
        issued_at,
        expires_at,
        gateway_id: c.gateway_id,
        building: c.building,
        blocks: c.blocks,
        unblocks: c.unblocks,
        upserts: c.upserts,
        removals: c.removals,
    })
}
