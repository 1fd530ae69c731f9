//! A reader's Secure Channel key on disk through a rotation.
//!
//! Two files: `F`, the key in force, and `F.next`, a new key not yet
//! proven to be the reader's. The steps of `portier reader rotate-key`,
//! and what a crash after each leaves:
//!
//! 1. write `F.next` (temporary file, fsync, rename, directory fsync;
//!    mode 0600) — the reader still holds `F`;
//! 2. KEYSET with `F.next`'s key inside the Secure Channel — the reader
//!    holds `F` or `F.next` (its answer may be lost);
//! 3. a new session with the new key — the reader holds `F.next`;
//! 4. rename `F.next` over `F` (directory fsync) — only the new key is
//!    left, the old one is retired.
//!
//! Whoever brings the reader up with both files present (`portier run`,
//! `probe`, the next `rotate-key`) tries `F` and then `F.next`
//! ([`crate::osdp::KeyPolicy::Rotating`]) and reaches the reader whichever
//! it holds; [`KeyFiles::settle`] then promotes or discards `F.next`. At
//! no point is a key only in memory or only on the reader.

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::{ConfigError, pending_scbk_path, read_scbk_policy};
use crate::osdp::KeyPolicy;
use crate::osdp::secure::Scbk;

/// Why a key file could not be read or changed.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// Reading or checking a key file failed.
    #[error("key file {}: {source}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: ConfigError,
    },
    /// Writing, renaming or syncing failed.
    #[error("key file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Test hook of the crash tests: abort the process, as a power cut would,
/// when `PORTIER_TEST_CRASH_AT` names this step of a rotation
/// (`next_written`, `keyset_acked`, `new_session`, `promoted`).
pub fn crash_point(name: &str) {
    if std::env::var("PORTIER_TEST_CRASH_AT").is_ok_and(|v| v == name) {
        eprintln!("PORTIER_TEST_CRASH_AT={name}: aborting");
        std::process::abort();
    }
}

/// A reader's key file and its pending sibling.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    current: PathBuf,
    next: PathBuf,
}

impl KeyFiles {
    /// The key file `path` (and `path.next`).
    pub fn new(path: &Path) -> Self {
        Self {
            current: path.to_owned(),
            next: pending_scbk_path(path),
        }
    }

    /// The key in force.
    pub fn current(&self) -> &Path {
        &self.current
    }

    /// The pending key's file.
    pub fn next(&self) -> &Path {
        &self.next
    }

    /// The policy to bring the reader up with: the key in force, or both
    /// after an interrupted rotation.
    pub fn load(&self) -> Result<KeyPolicy, KeyFileError> {
        read_scbk_policy(&self.current).map_err(|source| KeyFileError::Read {
            path: self.current.clone(),
            source,
        })
    }

    /// Step 1: the new key to `F.next`, durably, readable by its owner only.
    pub fn write_next(&self, key: &Scbk) -> Result<(), KeyFileError> {
        let failed = |source| KeyFileError::Write {
            path: self.next.clone(),
            source,
        };
        let mut tmp_name = self.next.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(failed)?;
            writeln!(file, "{}", hex::encode(key.0)).map_err(failed)?;
            file.sync_all().map_err(failed)?;
        }
        std::fs::rename(&tmp, &self.next).map_err(failed)?;
        self.sync_dir()
    }

    /// Step 4: the pending key becomes the key in force; the old one is gone.
    pub fn promote(&self) -> Result<(), KeyFileError> {
        std::fs::rename(&self.next, &self.current).map_err(|source| KeyFileError::Write {
            path: self.current.clone(),
            source,
        })?;
        self.sync_dir()
    }

    /// The reader proved it holds the key in force: the pending one never
    /// reached it and goes.
    pub fn discard_next(&self) -> Result<(), KeyFileError> {
        match std::fs::remove_file(&self.next) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(KeyFileError::Write {
                path: self.next.clone(),
                source,
            }),
        }
    }

    /// After a bring-up with both keys: keep the one the reader proved it
    /// holds (`pending`: the new one).
    pub fn settle(&self, pending: bool) -> Result<(), KeyFileError> {
        if pending {
            self.promote()
        } else {
            self.discard_next()
        }
    }

    fn sync_dir(&self) -> Result<(), KeyFileError> {
        let dir = match self.current.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| KeyFileError::Write {
                path: dir.to_owned(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const OLD: Scbk = Scbk([0x11; 16]);
    const NEW: Scbk = Scbk([0x22; 16]);

    fn files() -> (tempfile::TempDir, KeyFiles) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reader.scbk");
        std::fs::write(&path, hex::encode(OLD.0)).unwrap();
        (dir, KeyFiles::new(&path))
    }

    #[test]
    fn every_step_leaves_a_policy_that_holds_the_readers_key() {
        let (_dir, k) = files();
        assert_eq!(k.load().unwrap(), KeyPolicy::Secure(OLD));
        k.write_next(&NEW).unwrap();
        let mode = std::fs::metadata(k.next()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            k.load().unwrap(),
            KeyPolicy::Rotating {
                current: OLD,
                pending: NEW
            }
        );
        k.settle(true).unwrap();
        assert_eq!(k.load().unwrap(), KeyPolicy::Secure(NEW));
        assert!(!k.next().exists());
        // A pending key the reader never took is discarded.
        k.write_next(&OLD).unwrap();
        k.settle(false).unwrap();
        assert_eq!(k.load().unwrap(), KeyPolicy::Secure(NEW));
        k.discard_next().unwrap();
    }

    #[test]
    fn a_torn_pending_write_never_replaces_a_good_file() {
        let (dir, k) = files();
        // A crash mid-write leaves only the temporary file.
        std::fs::write(dir.path().join("reader.scbk.next.tmp"), "22").unwrap();
        assert_eq!(k.load().unwrap(), KeyPolicy::Secure(OLD));
        // A bad pending file is an error naming it, not a silent fallback.
        std::fs::write(k.next(), "not hex").unwrap();
        assert!(k.load().is_err());
    }
}
