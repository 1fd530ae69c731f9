//! Virtual time for unit tests of the sans-IO cores: one base instant,
//! read here so that no core module ever reads a clock, tests included.

use std::time::Instant;

/// The base instant of virtual time; tests add durations to it.
#[allow(clippy::disallowed_methods)] // the one clock read of the unit tests
pub(crate) fn epoch() -> Instant {
    Instant::now()
}
