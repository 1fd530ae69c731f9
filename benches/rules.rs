//! Rules benchmarks: decisions against a 1 M-credential sled store (with a
//! p99 over 100 000 single decisions), verify + apply of a 1 M-credential
//! snapshot, and a one-block delta apply. Also writes the signed snapshot,
//! its public key and a config to `target/bench-rules-1m/` so that
//! `scripts/bench-rules-rss` can measure the peak RSS of a real
//! `portier snapshot apply` (this process holds the built model too).
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock by design
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use portier::rules::envelope::{Block, sign_delta, sign_snapshot};
use portier::rules::{
    BlockReason, Card, Credential, CredentialKey, Delta, Request, Snapshot, TrustedKeys, source,
    verify_snapshot_records,
};
use portier::store::Store;

const N: u64 = 1_000_000;
const GW: &str = "gw-university-1";
const BUILDING: &str = "university-main";

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn snapshot() -> Snapshot {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.example.toml"),
    )
    .unwrap();
    let mut s = source::parse_rules(
        "rules.example.toml",
        &text,
        1,
        ts("2026-11-20T00:00:00Z"),
        ts("2036-11-20T00:00:00Z"),
    )
    .unwrap();
    s.credentials = (0..N)
        .map(|n| Credential {
            key: CredentialKey::H10304 {
                facility: 7,
                number: n,
            },
            display_name: None,
            access_levels: vec!["building-in-office-hours".into()],
            valid_from: None,
            valid_until: Some(ts("2029-08-31T00:00:00Z")),
            blocked: None,
            pin: None,
            extended_unlock: false,
            lockdown_exempt: false,
        })
        .collect();
    s
}

fn key(n: u64) -> CredentialKey {
    CredentialKey::H10304 {
        facility: 7,
        number: n,
    }
}

fn req(n: u64) -> Request {
    Request {
        door: "side-entrance".into(),
        card: Card::Key(key(n)),
        pin: None,
    }
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn rules(c: &mut Criterion) {
    let sk = SigningKey::from_bytes(&[5u8; 32]);
    let mut keys = TrustedKeys::new();
    keys.add(sk.verifying_key());
    let now = ts("2026-11-23T09:00:00Z");
    let t = Instant::now();
    let blob = sign_snapshot(&sk, &snapshot()).unwrap();
    eprintln!(
        "build + sign 1M snapshot: {:?}, {} bytes",
        t.elapsed(),
        blob.len()
    );
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-rules-1m");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("snap.bin"), &blob).unwrap();
    std::fs::write(
        out.join("central.pub"),
        hex::encode(sk.verifying_key().as_bytes()),
    )
    .unwrap();
    std::fs::write(
        out.join("portier.toml"),
        format!(
            "[gateway]\nid = \"{GW}\"\nbuilding = \"{BUILDING}\"\nstate_dir = \"state\"\n[trust]\ncentral_keys = [\"central.pub\"]\n"
        ),
    )
    .unwrap();
    let t = Instant::now();
    let v = verify_snapshot_records(&blob, &keys, GW, BUILDING, now, None).unwrap();
    eprintln!(
        "verify_snapshot_records (1M, in memory, records checked in place): {:?}",
        t.elapsed()
    );
    drop(v);
    let dir = tempfile::tempdir().unwrap();
    let st = Store::open(dir.path(), keys.clone(), GW, BUILDING).unwrap();
    let t = Instant::now();
    st.apply_snapshot(&blob, now).unwrap();
    eprintln!(
        "Store::apply_snapshot (verify + write + flush + flip, 1M): {:?}",
        t.elapsed()
    );
    drop(st);
    let t = Instant::now();
    let st = Store::open(dir.path(), keys.clone(), GW, BUILDING).unwrap();
    eprintln!("Store::open (re-verify, 1M in force): {:?}", t.elapsed());

    // p99 over single decisions at random cards (cold-ish cache at first).
    let mut rng = Lcg(42);
    let mut lat: Vec<Duration> = (0..100_000)
        .map(|_| {
            let r = req(rng.next() % N);
            let t = Instant::now();
            let d = st.decide(&r, now).unwrap();
            let e = t.elapsed();
            std::hint::black_box(d);
            e
        })
        .collect();
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    eprintln!(
        "decide in sled store, 1M credentials, 100k random reads: p50 {:?} p99 {:?} p99.9 {:?} max {:?}",
        q(0.5),
        q(0.99),
        q(0.999),
        lat[lat.len() - 1]
    );

    c.bench_function("rules/decide_sled_1m", |b| {
        let mut rng = Lcg(7);
        b.iter(|| st.decide(&req(rng.next() % N), now).unwrap())
    });

    let mut version = 1;
    let mut g = c.benchmark_group("rules");
    g.sample_size(20);
    g.bench_function("delta_one_block_sled_1m", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let d = Delta {
                    base_version: version,
                    version: version + 1,
                    issued_at: ts("2026-11-23T00:00:00Z"),
                    expires_at: ts("2036-11-23T00:00:00Z"),
                    gateway_id: GW.into(),
                    building: BUILDING.into(),
                    blocks: vec![Block {
                        card: key(version % N),
                        reason: BlockReason::Lost,
                    }],
                    unblocks: vec![],
                    upserts: vec![],
                    removals: vec![],
                };
                let bytes = sign_delta(&sk, &d).unwrap();
                let t = Instant::now();
                st.apply_delta(&bytes, now).unwrap();
                total += t.elapsed();
                version += 1;
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, rules);
criterion_main!(benches);
