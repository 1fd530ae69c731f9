//! Figures for BENCHMARKS.md (ignored by default; run with
//! `cargo test --release --test admin_measure -- --ignored --nocapture`):
//! login time (one argon2id check) and JSON/HTML/metrics request latency
//! over TLS, a new connection per request as `portier status` makes.

mod admin_support;

use std::time::{Duration, Instant};

use admin_support::start_fake;
use portier::admin::auth::LockoutConfig;
use portier::admin::client::Auth;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
#[allow(clippy::disallowed_methods)] // measures real time
async fn admin_port_latency() {
    let h = start_fake(LockoutConfig {
        max_failures: 1000,
        max_failures_per_address: 1000,
        ..LockoutConfig::default()
    })
    .await;
    let mut logins = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let _c = h.login(&h.viewer).await;
        logins.push(t.elapsed());
    }
    let c = h.client(Auth::Token(h.viewer_token.clone()));
    for (path, n) in [("/api/v1/status", 300), ("/", 300), ("/metrics", 300)] {
        let mut v = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let r = c.send("GET", path, &[], Vec::new()).await.unwrap();
            assert_eq!(r.status, 200);
            v.push(t.elapsed());
        }
        println!(
            "GET {path:<15} n={n} p50={:?} p99={:?}",
            pct(&mut v, 0.5),
            pct(&mut v, 0.99)
        );
    }
    println!(
        "login (GET form + POST + GET /) n=20 p50={:?} p99={:?}",
        pct(&mut logins, 0.5),
        pct(&mut logins, 0.99)
    );
    h.stop().await;
}
