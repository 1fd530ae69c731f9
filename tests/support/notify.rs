//! systemd's notify socket, played by a test: what a service sends it.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Read notify messages until `done` says so; panics after `limit` naming
/// `what` and what came.
pub fn recv_until(
    sock: &UnixDatagram,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&str) -> bool,
) -> Vec<String> {
    let end = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for {what}; got {seen:?}"
        );
        sock.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let stop = done(&msg);
            seen.push(msg);
            if stop {
                return seen;
            }
        }
    }
}
