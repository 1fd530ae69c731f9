//! Free space on the state directory's file system. The daemon keeps a
//! reserve there for alarms: below it, routine events are dropped (counted)
//! so that sled never meets a full disk — sled keeps an I/O error for good,
//! and a daemon that stops on it would crash-loop while the doors need it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a reading is reused by default: a `statvfs` per event is
/// cheap, but not free on a slow eMMC.
const FRESH: Duration = Duration::from_secs(1);

/// Free space of one file system, read at most once a second.
#[derive(Debug)]
pub struct DiskSpace {
    path: PathBuf,
    /// Bytes kept free for alarms.
    pub reserve: u64,
    fresh: Duration,
    last: Option<(Instant, u64)>,
}

impl DiskSpace {
    /// Watch the file system of `path`, keeping `reserve` bytes for alarms.
    pub fn new(path: &Path, reserve: u64) -> Self {
        Self {
            path: path.to_owned(),
            reserve,
            fresh: FRESH,
            last: None,
        }
    }

    /// Reuse a reading for `fresh` (zero: read at every check).
    pub fn with_freshness(mut self, fresh: Duration) -> Self {
        self.fresh = fresh;
        self
    }

    /// Bytes available to the daemon now (`u64::MAX` when it cannot be
    /// told: the journal's own errors then speak).
    pub fn available(&mut self, now: Instant) -> u64 {
        if let Some((at, bytes)) = self.last
            && now.saturating_duration_since(at) < self.fresh
        {
            return bytes;
        }
        let bytes = available_bytes(&self.path).unwrap_or(u64::MAX);
        self.last = Some((now, bytes));
        bytes
    }

    /// Whether the reserve has been reached.
    pub fn low(&mut self, now: Instant) -> bool {
        self.available(now) < self.reserve
    }
}

/// `statvfs(2)`: blocks available to an unprivileged user × fragment size.
#[allow(unsafe_code)]
// The field types differ between targets (u32 / u64 / i64).
#[allow(clippy::useless_conversion)]
pub fn available_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: a valid NUL-terminated path and a pointer to writable memory
    // of the right type; the result is read only after success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    let fragment = u64::try_from(stat.f_frsize).unwrap_or(0);
    Ok(u64::from(stat.f_bavail).saturating_mul(fragment))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_directory_has_some_space() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available_bytes(dir.path()).unwrap() > 0);
        assert!(available_bytes(&dir.path().join("missing")).is_err());
    }
}
