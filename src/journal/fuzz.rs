//! Entry point for the journal's fuzz target (`fuzz/`) and the corpus
//! replay test: arbitrary bytes after a segment file's magic (its salt,
//! then frames), as disk damage or a torn write could leave it. A panic here is a bug, never bad
//! input.

use super::{Journal, segment};

/// Open a journal whose one segment holds `data` after its magic: opening
/// keeps a prefix or refuses with an error; what it keeps reads back in
/// order without gaps (damaged records reported, not skipped); writing
/// after it goes on from the number open found.
pub fn segment(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = 1 + u64::from(data.first().copied().unwrap_or(0));
    let mut bytes = segment::MAGIC.to_vec();
    bytes.extend_from_slice(data);
    std::fs::write(dir.path().join(segment::file_name(first)), &bytes).expect("write segment");
    let Ok(mut journal) = Journal::open(dir.path()) else {
        return;
    };
    let next = journal.writer.next_seq();
    let records = journal.reader.records(0, 1 << 20).expect("read");
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    let expected: Vec<u64> = journal
        .reader
        .oldest()
        .map_or(Vec::new(), |o| (o..next).collect());
    assert_eq!(seqs, expected, "kept records in order, without gaps");
    for r in &records {
        let _ = r.decode();
    }
    let _ = journal.reader.after(0, 16);
    if next < u64::MAX / 2 {
        let at = "2026-11-26T00:00:00Z".parse().expect("timestamp");
        let kinds = vec![crate::event::EventKind::DoorForced {
            door: "fuzz".into(),
        }];
        let appended = journal.writer.append(at, kinds).expect("append after open");
        assert_eq!(appended[0].seq, next, "numbering goes on");
    }
}
