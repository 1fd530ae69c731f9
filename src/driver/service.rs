//! systemd integration: `Type=notify` readiness, `STOPPING=1`, status text,
//! and a watchdog whose pings are tied to the health of the loops that keep
//! doors working. A bus task or the daemon loop that stops making progress
//! means no ping, and systemd restarts the service (doors relock at their
//! PDs meanwhile: releases are timed).
//!
//! Outside systemd (no `NOTIFY_SOCKET`) every call here does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::sync::watch;

use super::daemon::DaemonView;
use crate::clock;
use crate::osdp::PdStatus;

/// Tell systemd the service is ready (rules loaded, buses open).
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tell systemd the service is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Ask systemd for `by` more time to start: a long one-off step (moving an
/// earlier version's journal) must not be killed by the start timeout and
/// begun again from scratch.
pub fn extend_start(by: Duration) {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    notify(&[NotifyState::ExtendTimeoutUsec(usec)]);
}

/// A one-line status for `systemctl status`.
pub fn status(text: &str) {
    notify(&[NotifyState::Status(text)]);
}

fn notify(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot reach systemd's notify socket");
    }
}

/// How long a loop may go without progress before it counts as stalled:
/// a bus task passes its loop at least every probe back-off (8 s at most),
/// the daemon loop at least every [`super::daemon::MAX_IDLE`] (10 s).
pub const ALLOWANCE: Duration = Duration::from_secs(20);

/// The loops that keep doors working, and when each last made progress.
#[derive(Debug)]
pub struct Liveness {
    /// Per bus with PDs: its status, updated on every pass of its loop.
    pub buses: Vec<(String, watch::Receiver<Vec<PdStatus>>)>,
    /// The daemon loop's view, published on every round.
    pub daemon: watch::Receiver<DaemonView>,
    /// The uplink's state, when it runs: it changes at least every
    /// [`super::uplink::HEARTBEAT`] while its loop turns.
    pub uplink: Option<watch::Receiver<super::uplink::UplinkState>>,
    last: Vec<Option<Instant>>,
}

impl Liveness {
    /// Watch these loops.
    pub fn new(
        buses: Vec<(String, watch::Receiver<Vec<PdStatus>>)>,
        daemon: watch::Receiver<DaemonView>,
    ) -> Self {
        let last = vec![None; buses.len() + 2];
        Self {
            buses,
            daemon,
            uplink: None,
            last,
        }
    }

    /// Also watch the uplink loop.
    pub fn with_uplink(mut self, uplink: watch::Receiver<super::uplink::UplinkState>) -> Self {
        self.uplink = Some(uplink);
        self
    }

    /// Names of the loops without progress for longer than [`ALLOWANCE`]
    /// at `now` (a loop not seen yet counts from its first check).
    pub fn stalled(&mut self, now: Instant) -> Vec<String> {
        let mut stalled = Vec::new();
        let mut check = |i: usize, changed: bool, name: String, last: &mut Vec<Option<Instant>>| {
            let seen = last[i].get_or_insert(now);
            if changed {
                *seen = now;
            } else if now.duration_since(*seen) > ALLOWANCE {
                stalled.push(name);
            }
        };
        for (i, (name, status)) in self.buses.iter_mut().enumerate() {
            let changed = matches!(status.has_changed(), Ok(true));
            status.mark_unchanged();
            check(i, changed, format!("bus {name}"), &mut self.last);
        }
        let changed = matches!(self.daemon.has_changed(), Ok(true));
        self.daemon.mark_unchanged();
        check(
            self.buses.len(),
            changed,
            "daemon loop".to_owned(),
            &mut self.last,
        );
        if let Some(uplink) = &mut self.uplink {
            let changed = matches!(uplink.has_changed(), Ok(true));
            uplink.mark_unchanged();
            check(
                self.buses.len() + 1,
                changed,
                "uplink".to_owned(),
                &mut self.last,
            );
        }
        stalled
    }
}

/// Ping the watchdog (when systemd asked for one) at half its interval, but
/// only while every loop makes progress. Runs until `shutdown`.
pub async fn watchdog(mut liveness: Liveness, mut shutdown: watch::Receiver<bool>) {
    let Some(limit) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (limit / 2).max(Duration::from_millis(100));
    tracing::info!(?limit, "systemd watchdog armed");
    loop {
        let stalled = liveness.stalled(clock::monotonic());
        if stalled.is_empty() {
            notify(&[NotifyState::Watchdog]);
        } else {
            tracing::error!(stalled = ?stalled, "no progress: withholding the watchdog ping");
            status(&format!("stalled: {}", stalled.join(", ")));
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_without_progress_for_too_long_is_named() {
        let t = crate::test_clock::epoch();
        let (bus_tx, bus_rx) = watch::channel(Vec::new());
        let (daemon_tx, daemon_rx) = watch::channel(DaemonView::default());
        let mut l = Liveness::new(vec![("bus-1".into(), bus_rx)], daemon_rx);
        assert!(l.stalled(t).is_empty());
        // Quiet, but within the allowance.
        assert!(l.stalled(t + ALLOWANCE).is_empty());
        daemon_tx.send_replace(DaemonView::default());
        let later = t + ALLOWANCE + Duration::from_secs(1);
        assert_eq!(l.stalled(later), vec!["bus bus-1".to_owned()]);
        bus_tx.send_replace(Vec::new());
        assert!(l.stalled(later).is_empty());
        let much_later = later + ALLOWANCE + Duration::from_secs(1);
        assert_eq!(
            l.stalled(much_later),
            vec!["bus bus-1".to_owned(), "daemon loop".to_owned()]
        );
    }
}
