//! Durable append rate of the event journal: batches of events appended
//! and flushed (group commit), as the daemon does.
#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use portier::event::EventKind;
use portier::journal::Journal;

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path();
    let mut journal = Journal::open(journal_path).unwrap().writer;
    let at = "2026-11-23T20:00:00Z".parse().unwrap();
    let mut group = c.benchmark_group("journal_append_flushed");
    for batch in [1usize, 10, 100] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter_batched(
                || {
                    (0..batch)
                        .map(|i| EventKind::AccessDenied {
                            door: "side-entrance".into(),
                            reader: "side-entrance-in".into(),
                            credential: Some(format!("h10301:42:{i}")),
                            reason: portier::rules::DenyReason::OutsideSchedule,
                        })
                        .collect::<Vec<_>>()
                },
                |events| journal.append(at, events).unwrap(),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
