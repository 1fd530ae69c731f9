//! Opening sled databases. sled releases its file lock only when its
//! background flusher has finished with a dropped handle, so a reopen right
//! after a drop (a restart in the same process, a test, a CLI run straight
//! after another) can see "could not acquire lock" for a few milliseconds.
//! Every sled open in Portier goes through [`open_db`], which waits for that
//! lock for a bounded time instead of failing.

use std::path::Path;
use std::time::Duration;

/// How long [`open_db`] waits for a lock held by a handle being dropped.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Open (or create) the sled database in `dir` with the given page-cache
/// budget, waiting up to [`LOCK_WAIT`] for its file lock. A lock still held
/// after that is another live process: the error says so.
pub fn open_db(dir: &Path, cache_capacity: u64) -> sled::Result<sled::Db> {
    const STEP: Duration = Duration::from_millis(20);
    let attempts = LOCK_WAIT.as_millis() / STEP.as_millis();
    let mut attempt = 0;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity)
            .open()
        {
            Err(sled::Error::Io(e)) if is_lock_error(&e) => {
                if attempt >= attempts {
                    return Err(sled::Error::Io(std::io::Error::other(format!(
                        "{}: locked by another process (is another portier running on this state directory?): {e}",
                        dir.display()
                    ))));
                }
                attempt += 1;
                std::thread::sleep(STEP);
            }
            other => return other,
        }
    }
}

fn is_lock_error(e: &std::io::Error) -> bool {
    e.to_string().contains("acquire lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_right_after_drop_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..20u8 {
            let db = open_db(dir.path(), 1 << 20).unwrap();
            db.insert([round], &[round]).unwrap();
            db.flush().unwrap();
            drop(db);
        }
        let db = open_db(dir.path(), 1 << 20).unwrap();
        assert_eq!(db.len(), 20);
    }

    #[test]
    fn a_live_holder_is_reported_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let _held = open_db(dir.path(), 1 << 20).unwrap();
        let err = open_db(dir.path(), 1 << 20).unwrap_err().to_string();
        assert!(err.contains("locked by another process"), "{err}");
    }
}
