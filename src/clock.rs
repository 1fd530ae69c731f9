//! The one place Portier reads clocks and OS entropy (the drivers, the
//! admin port and the command line call it); the sans-IO cores get `now`
//! and entropy from here. `clippy.toml` bans every other clock read and
//! `tests/architecture.rs` checks the source for them.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Monotonic now, for timeouts and scheduling.
#[allow(clippy::disallowed_methods)] // the clock read point
pub fn monotonic() -> Instant {
    Instant::now()
}

/// The async runtime's timer clock, for `tokio::time` deadlines (it
/// follows the runtime's paused time in tests).
#[allow(clippy::disallowed_methods)] // the clock read point
pub fn timer() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// The system's wall clock, as a timestamp (believed only after the
/// gateway core checked it: see `site::clock`).
pub fn wall() -> jiff::Timestamp {
    let since = since_epoch();
    // A Duration since the epoch always fits.
    jiff::Timestamp::from_nanosecond(since.as_nanos() as i128)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Wall-clock time since the Unix epoch, for timestamps.
#[allow(clippy::disallowed_methods)] // the clock read point
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Fill `buf` from the operating system's CSPRNG.
pub fn os_entropy(buf: &mut [u8]) {
    // getrandom only fails on platforms without an entropy source, where the
    // daemon must not run at all.
    getrandom::fill(buf).expect("operating system entropy source");
}

/// Where this boot's monotonic clock stood at a known instant: the
/// kernel's boot id and the time since boot, read once per process
/// (`/proc/sys/kernel/random/boot_id`, `/proc/uptime`). `None` where the
/// kernel does not say (then nothing is carried over a restart by it).
#[derive(Debug, Clone, Copy)]
pub struct BootSample {
    /// The boot id as a number.
    pub id: u128,
    /// A monotonic instant...
    pub at: Instant,
    /// ... and the time since boot then.
    pub since_boot: Duration,
}

/// This boot's sample (see [`BootSample`]), read once.
pub fn boot() -> Option<BootSample> {
    static SAMPLE: std::sync::OnceLock<Option<BootSample>> = std::sync::OnceLock::new();
    *SAMPLE.get_or_init(|| {
        let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let id = u128::from_str_radix(&id.trim().replace('-', ""), 16).ok()?;
        let at = monotonic();
        let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
        let secs: f64 = uptime.split_whitespace().next()?.parse().ok()?;
        Some(BootSample {
            id,
            at,
            since_boot: Duration::try_from_secs_f64(secs).ok()?,
        })
    })
}
