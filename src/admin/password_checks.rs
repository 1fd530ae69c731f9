//! Password checks one at a time, on one thread that owns argon2's memory.
//!
//! Why: each argon2id check needs 19 MiB. Run on tokio's blocking pool,
//! every check allocated afresh on whichever thread ran it, and glibc kept
//! each thread's freed arena: 200 failed logins took the daemon from 17 MB
//! to 894 MB (issue 24). Here one thread reuses one [`HashMemory`], so a
//! login flood costs that memory once and at most one core. Requests
//! beyond [`WAITING`] are not queued: the caller answers 429 at once.

use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::{Mutex, MutexGuard, OwnedSemaphorePermit, Semaphore, oneshot};

use super::auth::{Directory, HashMemory, PasswordCheck};

/// Logins admitted at once: the one being checked and those waiting for
/// it. At about 40 ms a check (release build, this machine), the last
/// waits some 300 ms.
pub(crate) const WAITING: usize = 8;

struct Job {
    directory: Arc<Directory>,
    user: String,
    password: String,
    reply: oneshot::Sender<PasswordCheck>,
}

/// The checking thread and its admission.
pub(crate) struct PasswordChecks {
    jobs: mpsc::Sender<Job>,
    admitted: Arc<Semaphore>,
    turn: Mutex<()>,
}

/// A login admitted to wait for its check.
pub(crate) struct Admitted(#[allow(dead_code)] OwnedSemaphorePermit);

impl PasswordChecks {
    /// Start the thread; it ends when this is dropped.
    pub(crate) fn start() -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("admin-passwords".into())
            .spawn(move || {
                let mut memory = HashMemory::default();
                for job in rx {
                    // The login gave up (its connection went): no check,
                    // so that abandoned logins cannot pile up work.
                    if job.reply.is_closed() {
                        continue;
                    }
                    let check = job
                        .directory
                        .check_password(&job.user, &job.password, &mut memory);
                    let _ = job.reply.send(check);
                }
            })?;
        Ok(Self {
            jobs,
            admitted: Arc::new(Semaphore::new(WAITING)),
            turn: Mutex::new(()),
        })
    }

    /// A place among the [`WAITING`], or `None`: answer "busy".
    pub(crate) fn admit(&self) -> Option<Admitted> {
        self.admitted.clone().try_acquire_owned().ok().map(Admitted)
    }

    /// Wait for this login's turn (one at a time, in arrival order). The
    /// caller checks the lockout while it holds the turn, so guesses sent
    /// at once are counted one after the other.
    pub(crate) async fn turn(&self, _: &Admitted) -> MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// Check on the thread (call while holding the turn). A thread that
    /// is gone answers `Wrong`: no way in without a check.
    pub(crate) async fn check(
        &self,
        _: &MutexGuard<'_, ()>,
        directory: Arc<Directory>,
        user: String,
        password: String,
    ) -> PasswordCheck {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            directory,
            user,
            password,
            reply,
        };
        if self.jobs.send(job).is_err() {
            tracing::error!("admin: the password-check thread is gone; login refused");
            return PasswordCheck::Wrong;
        }
        answer.await.unwrap_or(PasswordCheck::Wrong)
    }
}
