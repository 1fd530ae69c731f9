//! The one place Portier reads clocks and OS entropy (the drivers and the
//! admin port call it); the sans-IO cores get `now` and entropy from here.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Monotonic now, for timeouts and scheduling.
#[allow(clippy::disallowed_methods)] // the clock read point
pub fn monotonic() -> Instant {
    Instant::now()
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
