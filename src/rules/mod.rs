//! Signed rule snapshots and the offline decision engine (sans-IO).
