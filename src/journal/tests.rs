//! The journal's own tests: commits, roll-over, acknowledgement, crashes
//! at every byte, damage, and what opening does with each.

use super::*;

fn at() -> Timestamp {
    "2026-11-23T18:30:00Z".parse().unwrap()
}

fn granted(door: &str) -> EventKind {
    EventKind::AccessGranted {
        door: door.into(),
        reader: "side-entrance-in".into(),
        credential: "h10301:42:1001".into(),
    }
}

/// The newest segment file and its length now.
fn newest(dir: &Path) -> (PathBuf, u64) {
    let (_, path) = segment::list(dir).unwrap().pop().unwrap();
    let len = file_len(&path);
    (path, len)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn segment_files(dir: &Path) -> Vec<u64> {
    segment::list(dir)
        .unwrap()
        .into_iter()
        .map(|(f, _)| f)
        .collect()
}

#[test]
fn appends_in_order_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let Journal {
        mut writer, reader, ..
    } = Journal::open(dir.path()).unwrap();
    let a = writer
        .append(at(), vec![granted("a"), granted("b")])
        .unwrap();
    let b = writer
        .append(at(), vec![EventKind::DoorForced { door: "c".into() }])
        .unwrap();
    assert_eq!(a.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(b[0].seq, 3);
    let all = reader.after(0, 10).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].kind, EventKind::DoorForced { door: "c".into() });
    assert_eq!(reader.after(1, 1).unwrap()[0].seq, 2);
    assert_eq!((reader.len(), reader.oldest()), (3, Some(1)));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Journal::open(dir.path()).unwrap();
    assert!(matches!(
        Journal::open(dir.path()),
        Err(JournalError::Locked(_))
    ));
}

#[test]
fn sequence_numbers_are_never_reused_after_deletion_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Journal {
        mut writer,
        reader,
        mut acker,
        ..
    } = Journal::open(dir.path()).unwrap();
    writer
        .append(at(), vec![granted("a"), granted("b"), granted("c")])
        .unwrap();
    assert_eq!(acker.delete_through(3).unwrap(), 3);
    assert!(reader.is_empty());
    assert_eq!((reader.acked(), reader.oldest()), (3, None));
    drop((writer, reader, acker));
    let mut journal = Journal::open(dir.path()).unwrap();
    assert_eq!(journal.reader.acked(), 3);
    let next = journal.writer.append(at(), vec![granted("d")]).unwrap();
    assert_eq!(next[0].seq, 4);
}

#[test]
fn the_count_follows_appends_and_acks_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    for _ in 0..5 {
        j.writer
            .append(at(), (0..10).map(|i| granted(&i.to_string())).collect())
            .unwrap();
    }
    assert_eq!(j.reader.len(), 50);
    assert_eq!(j.acker.delete_through(12).unwrap(), 12);
    assert_eq!(j.acker.delete_through(12).unwrap(), 0, "twice is once");
    assert_eq!(j.acker.delete_through(5).unwrap(), 0, "acks never go back");
    assert_eq!((j.reader.len(), j.reader.oldest()), (38, Some(13)));
    assert_eq!(j.reader.oldest_event().unwrap().unwrap().seq, 13);
    // Beyond the last event: clamped, the next events are kept.
    assert_eq!(j.acker.delete_through(u64::MAX).unwrap(), 38);
    assert!(j.reader.is_empty());
    j.writer.append(at(), vec![granted("x")]).unwrap();
    assert_eq!((j.reader.len(), j.reader.oldest()), (1, Some(51)));
    drop(j);
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!((j.reader.len(), j.reader.oldest()), (1, Some(51)));
    assert_eq!(j.writer.next_seq(), 52);
}

#[test]
fn segments_roll_over_are_read_across_and_go_when_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let Journal {
        writer,
        reader,
        mut acker,
        ..
    } = Journal::open(dir.path()).unwrap();
    let mut writer = writer.with_segment_bytes(1000);
    for i in 0..300 {
        let state = (i % 7 == 0).then(|| format!("state {i}").into_bytes());
        writer
            .commit(at(), vec![granted(&i.to_string())], state)
            .unwrap();
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 20, "{files:?}");
    // Every sequence number, in order, from any starting point.
    for after in [0, 1, 57, 150, 299] {
        let seqs: Vec<u64> = reader
            .records(after, 1000)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, (after + 1..=300).collect::<Vec<_>>());
    }
    assert_eq!(reader.records(10, 5).unwrap().last().unwrap().seq, 15);
    acker.delete_through(150).unwrap();
    let left = segment_files(dir.path());
    assert!(left.len() < files.len() / 2 + 2, "{left:?}");
    assert!(
        left[0] <= 151 && left.get(1).is_none_or(|s| *s > 151),
        "{left:?}"
    );
    assert_eq!(reader.records(0, 1).unwrap()[0].seq, 151);
    drop((writer, reader, acker));
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.state.as_deref(), Some(&b"state 294"[..]));
    assert_eq!((j.reader.oldest(), j.writer.next_seq()), (Some(151), 301));
}

#[test]
fn the_state_survives_a_reopen_with_or_without_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.state, None);
    j.writer
        .commit(at(), vec![granted("a")], Some(b"lockdown".to_vec()))
        .unwrap();
    j.writer.append(at(), vec![granted("b")]).unwrap();
    drop(j);
    let mut j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.state.as_deref(), Some(&b"lockdown"[..]));
    // A state alone (an override that ended, nothing to record).
    assert!(
        j.writer
            .commit(at(), vec![], Some(b"normal".to_vec()))
            .unwrap()
            .is_empty()
    );
    drop(j);
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.state.as_deref(), Some(&b"normal"[..]));
    assert_eq!(j.writer.next_seq(), 3);
}

#[test]
fn a_torn_last_commit_is_cut_off_at_every_length() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.writer
        .commit(at(), vec![granted("a")], Some(b"one".to_vec()))
        .unwrap();
    let (path, whole) = newest(dir.path());
    j.writer
        .commit(
            at(),
            vec![granted("b"), granted("c")],
            Some(b"two".to_vec()),
        )
        .unwrap();
    drop(j);
    let full = std::fs::read(&path).unwrap();
    for cut in whole..full.len() as u64 {
        opens_cut_back_to_the_first_commit(dir.path(), &path, &full, cut, whole);
    }
}

/// The segment `path` holding `full` cut at `cut` (inside the second of two
/// commits, the first ending at `whole` with state "one"): the journal
/// opens with the first commit's state, cuts the file back to it, and
/// writing goes on where that commit ended.
fn opens_cut_back_to_the_first_commit(dir: &Path, path: &Path, full: &[u8], cut: u64, whole: u64) {
    std::fs::write(path, &full[..cut as usize]).unwrap();
    let mut j =
        Journal::open(dir).unwrap_or_else(|e| panic!("cut at {cut} of {}: {e}", full.len()));
    assert_eq!(j.state.as_deref(), Some(&b"one"[..]), "cut at {cut}");
    assert_eq!(j.writer.next_seq(), 2, "cut at {cut}");
    assert_eq!(file_len(path), whole);
    assert_eq!(j.writer.append(at(), vec![granted("d")]).unwrap()[0].seq, 2);
}

#[test]
fn a_torn_last_commit_of_megabytes_is_cut_off_wherever_it_was_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.writer
        .commit(at(), vec![granted("a")], Some(b"one".to_vec()))
        .unwrap();
    let (path, whole) = newest(dir.path());
    // A 2 MB commit: a large state and events, its bytes varied so that
    // no search finds frames in them by luck.
    let big: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    j.writer
        .commit_state(
            at(),
            (0..500).map(|i| granted(&format!("door-{i}"))).collect(),
            Some(StateWrite::Whole(big)),
        )
        .unwrap();
    drop(j);
    let full = std::fs::read(&path).unwrap();
    let frame_len = full.len() as u64 - whole;
    assert!(frame_len > 2_000_000);
    let mut cuts: Vec<u64> = (whole..whole + 64).collect();
    cuts.extend((whole..full.len() as u64).step_by(40_009));
    cuts.extend(full.len() as u64 - 64..full.len() as u64);
    cuts.push(whole + frame_len * 6 / 10);
    for cut in cuts {
        opens_cut_back_to_the_first_commit(dir.path(), &path, &full, cut, whole);
    }
}

#[test]
fn state_changes_follow_the_whole_state_across_reopens_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.writer = j.writer.with_segment_bytes(300);
    let w = &mut j.writer;
    w.commit_state(at(), vec![], Some(StateWrite::Whole(b"whole-1".to_vec())))
        .unwrap();
    for i in 0..20 {
        let change = format!("change-{i}").into_bytes();
        w.commit_state(at(), vec![granted("a")], Some(StateWrite::Change(change)))
            .unwrap();
    }
    assert!(segment_files(dir.path()).len() > 3, "crossed segment heads");
    assert_eq!(w.state_bytes(), 7);
    drop(j);
    let mut j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.state.as_deref(), Some(&b"whole-1"[..]));
    let changes: Vec<String> = j
        .state_changes
        .iter()
        .map(|c| String::from_utf8(c.clone()).unwrap())
        .collect();
    assert_eq!(
        changes,
        (0..20).map(|i| format!("change-{i}")).collect::<Vec<_>>()
    );
    // A whole state forgets the changes before it, also across a reopen.
    j.writer
        .commit_state(at(), vec![], Some(StateWrite::Whole(b"whole-2".to_vec())))
        .unwrap();
    j.writer
        .commit_state(at(), vec![], Some(StateWrite::Change(b"after".to_vec())))
        .unwrap();
    assert_eq!(j.writer.state_change_bytes(), 5);
    drop(j);
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.state.as_deref(), Some(&b"whole-2"[..]));
    assert_eq!(j.state_changes, vec![b"after".to_vec()]);
}

#[test]
fn a_roll_over_cut_before_its_rename_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.writer
        .commit(at(), vec![granted("a")], Some(b"kept".to_vec()))
        .unwrap();
    drop(j);
    // The crash came while the next segment was written under its
    // temporary name.
    let tmp = dir
        .path()
        .join(segment::file_name(2))
        .with_extension("seg.tmp");
    std::fs::write(&tmp, segment::MAGIC).unwrap();
    // (a temporary file is never read, whatever it holds)
    let mut j = Journal::open(dir.path()).unwrap();
    assert!(!tmp.exists());
    assert_eq!(segment_files(dir.path()), vec![1]);
    assert_eq!(
        (j.writer.next_seq(), j.state.as_deref()),
        (2, Some(&b"kept"[..]))
    );
    assert_eq!(j.writer.append(at(), vec![granted("b")]).unwrap()[0].seq, 2);
}

#[test]
fn a_newest_segment_without_a_whole_frame_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.writer
        .commit(at(), vec![granted("a")], Some(b"lockdown".to_vec()))
        .unwrap();
    drop(j);
    // Renamed into place only with its first frame: this is damage,
    // and that frame may have carried a newer state.
    std::fs::write(dir.path().join(segment::file_name(2)), segment::MAGIC).unwrap();
    assert!(matches!(
        Journal::open(dir.path()),
        Err(JournalError::StateUnreadable(..))
    ));
}

#[test]
fn a_damaged_commit_after_the_last_state_stops_the_open_but_not_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    let mut ends = Vec::new();
    j.writer
        .commit(at(), vec![granted("a")], Some(b"one".to_vec()))
        .unwrap();
    let (path, _) = newest(dir.path());
    ends.push(file_len(&path));
    j.writer
        .commit(at(), vec![granted("b")], Some(b"two".to_vec()))
        .unwrap();
    ends.push(file_len(&path));
    j.writer.append(at(), vec![granted("c")]).unwrap();
    drop(j);
    let good = std::fs::read(&path).unwrap();
    // The second commit (a state) damaged, a whole one after it.
    let mut bytes = good.clone();
    bytes[((ends[0] + ends[1]) / 2) as usize] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let e = Journal::open(dir.path()).unwrap_err();
    assert!(matches!(e, JournalError::StateUnreadable(..)), "{e}");
    assert!(e.to_string().contains("lockdown"), "{e}");
    // The third commit (no state) damaged instead: the state is known,
    // the events are all there or reported, nothing is cut.
    let mut bytes = good.clone();
    bytes[ends[1] as usize + 3] ^= 0x10;
    bytes.extend_from_slice(&good[ends[0] as usize..ends[1] as usize]);
    std::fs::write(&path, &bytes).unwrap();
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.state.as_deref(), Some(&b"two"[..]));
    assert_eq!(file_len(&path), bytes.len() as u64);
    drop(j);
}

#[test]
fn a_damaged_commit_that_a_later_write_followed_is_not_cut_as_torn() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.writer
        .commit(at(), vec![granted("a")], Some(b"one".to_vec()))
        .unwrap();
    let (path, first_end) = newest(dir.path());
    let first_end = first_end as usize;
    j.writer
        .commit(at(), vec![granted("b")], Some(b"lockdown".to_vec()))
        .unwrap();
    let second_end = file_len(&path) as usize;
    drop(j);
    // The lockdown commit rots; then a write begun after it was torn.
    let mut bytes = std::fs::read(&path).unwrap();
    let torn = bytes[first_end..second_end][..12].to_vec();
    bytes[first_end + 12] ^= 0x01;
    bytes.extend_from_slice(&torn);
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Journal::open(dir.path()),
        Err(JournalError::StateUnreadable(..))
    ));
    assert_eq!(file_len(&path), bytes.len() as u64);
}

#[test]
fn a_frame_hidden_in_event_text_is_never_taken_for_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.writer
        .commit(at(), vec![granted("a")], Some(b"lockdown".to_vec()))
        .unwrap();
    let (path, before) = newest(dir.path());
    let before = before as usize;
    // A login name as typed, shaped like a frame that claims "no
    // state" and numbers near the end (under a salt guessed as zero),
    // all of it ASCII.
    let planted = (0x3f3f_3f3f_3f3f_3f00u64..)
        .map(|first_seq| {
            let mut planted = Vec::new();
            frame::encode(
                &mut planted,
                &[0; 8],
                frame::FrameOut {
                    first_seq,
                    dropped: None,
                    state: Some(b""),
                    changes: &[],
                },
                std::iter::empty(),
            );
            planted
        })
        .find(|p| p.is_ascii())
        .unwrap();
    let text = String::from_utf8(planted.clone()).unwrap();
    j.writer
        .append(at(), vec![EventKind::DoorForced { door: text.into() }])
        .unwrap();
    drop(j);
    // Its commit's length field is then damaged.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[before + 2] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.state.as_deref(), Some(&b"lockdown"[..]));
    assert!(j.writer.next_seq() < 10, "{}", j.writer.next_seq());
}

#[test]
fn numbers_never_go_back_below_what_central_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.writer.append(at(), vec![granted("a")]).unwrap();
    j.acker.delete_through(1).unwrap();
    drop(j);
    // The acknowledged bound says more than the segment (its tail was
    // lost to a disk that lied about its flush).
    let mut record = 700u64.to_le_bytes().to_vec();
    record.extend_from_slice(&crc32fast::hash(&700u64.to_le_bytes()).to_le_bytes());
    std::fs::write(dir.path().join(ACKED_FILE), record).unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    assert_eq!(
        j.writer.append(at(), vec![granted("b")]).unwrap()[0].seq,
        701
    );
    assert_eq!(j.reader.records(0, 10).unwrap().len(), 1);
}

#[test]
fn damage_inside_a_committed_segment_is_reported_per_record_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let Journal { writer, reader, .. } = Journal::open(dir.path()).unwrap();
    let mut writer = writer.with_segment_bytes(600);
    for i in 0..40 {
        writer.append(at(), vec![granted(&i.to_string())]).unwrap();
    }
    let files = segment::list(dir.path()).unwrap();
    assert!(files.len() >= 3);
    // Flip a byte in the middle of the first segment.
    let (first, path) = &files[0];
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(path, &bytes).unwrap();
    let records = reader.records(0, 1000).unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>(), "no gap, no duplicate");
    let damaged: Vec<u64> = records
        .iter()
        .filter(|r| r.decode().is_err())
        .map(|r| r.seq)
        .collect();
    // One commit per event here: one flipped byte costs one event.
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert!(
        damaged[0] >= *first && damaged[0] < files[1].0,
        "{damaged:?}"
    );
    let err = records[damaged[0] as usize - 1]
        .decode()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checksum") || err.contains("malformed"),
        "{err}"
    );
}

#[test]
fn a_failed_write_leaves_no_half_frame() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.writer.append(at(), vec![granted("a")]).unwrap();
    let (path, len) = newest(dir.path());
    // A write that failed half-way and could not even be cut off
    // leaves bytes past the committed end: the next frame is written
    // at the committed end, and the rest is cut at the next open.
    let active = j.writer.active.as_ref().unwrap();
    assert_eq!(active.end, len);
    active
        .file
        .write_all_at(b"\xff\x00\x00\x00half a frame and more", len)
        .unwrap();
    j.writer.append(at(), vec![granted("b")]).unwrap();
    drop(j);
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.reader.after(0, 10).unwrap().len(), 2);
    // What was left past the second frame is gone.
    assert_eq!(file_len(&path), j.writer.active.as_ref().unwrap().end);
}

#[test]
fn a_full_journal_keeps_alarms_and_counts_what_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let Journal {
        writer,
        reader,
        mut acker,
        ..
    } = Journal::open(dir.path()).unwrap();
    let mut journal = writer.with_budget(5);
    journal
        .append(at(), (0..4).map(|i| granted(&i.to_string())).collect())
        .unwrap();
    let forced = EventKind::DoorForced {
        door: "side".into(),
    };
    let kept = journal
        .append(at(), vec![granted("x"), granted("y"), forced.clone()])
        .unwrap();
    let kinds: Vec<EventKind> = kept.into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            granted("x"),
            forced.clone(),
            EventKind::JournalFull { dropped: 1 }
        ]
    );
    // Still full: more drops, no second alarm for the same episode.
    let kept = journal
        .append(at(), vec![granted("z"), forced.clone()])
        .unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(reader.dropped(), 2);
    // Only routine events: nothing kept, the count still moves and
    // survives a reopen.
    assert!(journal.append(at(), vec![granted("v")]).unwrap().is_empty());
    assert_eq!(reader.dropped(), 3);
    // Central acknowledged everything: room again, nothing dropped.
    acker.delete_through(u64::MAX - 1).unwrap();
    assert_eq!(journal.append(at(), vec![granted("w")]).unwrap().len(), 1);
    drop((journal, reader, acker));
    assert_eq!(Journal::open(dir.path()).unwrap().reader.dropped(), 3);
}

#[test]
fn readers_see_every_commit_while_it_is_written_rolled_and_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let Journal {
        writer,
        reader,
        mut acker,
        ..
    } = Journal::open(dir.path()).unwrap();
    let mut writer = writer.with_segment_bytes(4096);
    // A backlog in big frames, as a fill leaves it.
    for _ in 0..20 {
        writer
            .append(at(), (0..100).map(|i| granted(&i.to_string())).collect())
            .unwrap();
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let drain = reader.clone();
    let acking = std::thread::spawn(move || {
        let mut after = 0;
        while !stop.load(Ordering::Acquire) {
            let records = drain.records(after, 300).unwrap();
            if let Some(last) = records.last() {
                after = last.seq;
                acker.delete_through(after).unwrap();
            }
        }
    });
    for i in 0..2000u64 {
        let seq = writer.append(at(), vec![granted("x")]).unwrap()[0].seq;
        if i % 3 == 0 {
            writer
                .commit(at(), vec![], Some(i.to_le_bytes().to_vec()))
                .unwrap();
        }
        // Acknowledged or not, the latest events stay readable.
        let seen = reader.after(seq - 1, 1000);
        let seen = seen.unwrap_or_else(|e| panic!("seq {seq}: {e}"));
        assert_eq!(seen.first().map(|e| e.seq), Some(seq), "seq {seq}");
        // What the uplink reads never goes below the acknowledged.
        let acked = reader.acked();
        let unacked = reader.records(0, 1).unwrap();
        assert!(unacked.first().is_none_or(|r| r.seq > acked));
    }
    done.store(true, Ordering::Release);
    acking.join().unwrap();
}

#[test]
fn every_event_is_bounded_before_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let Journal {
        mut writer, reader, ..
    } = Journal::open(dir.path()).unwrap();
    let name = format!("a\0b\u{1b}[31m{}", "x".repeat(2 << 20));
    let written = writer
        .append(
            at(),
            vec![EventKind::AdminLogin {
                user: name,
                client: "127.0.0.1".into(),
                result: crate::event::LoginResult::Ok,
            }],
        )
        .unwrap();
    let (_, len) = newest(dir.path());
    assert!(len < 1024, "a 2 MB name took {len} bytes");
    let back = reader.after(0, 1).unwrap();
    assert_eq!(back, written);
    let EventKind::AdminLogin { user, .. } = &back[0].kind else {
        panic!("{back:?}")
    };
    assert!(user.starts_with("a\\u{0}b\\u{1b}[31mxxx") && user.ends_with('…'));
    assert!(user.len() <= crate::text::NAME);
}

#[test]
fn an_event_over_the_cap_is_replaced_by_its_stand_in() {
    let mut e = Event {
        seq: 7,
        at: at(),
        kind: granted("a"),
    };
    let small = encode_capped(&mut e, MAX_EVENT_BYTES).unwrap();
    assert_eq!(e.kind, granted("a"));
    let stand_in = encode_capped(&mut e, 16).unwrap();
    assert_eq!(
        e.kind,
        EventKind::EventOversized {
            kind: "access_granted".into(),
            bytes: small.len() as u64,
        }
    );
    let back: Event = serde_cbor::from_slice(&stand_in).unwrap();
    assert_eq!((back.seq, back.kind), (7, e.kind));
}

#[test]
fn a_new_journal_gets_a_random_id_once_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path()).unwrap();
    let id = j.id();
    assert!(!id.is_nil());
    assert_eq!(j.reader.id(), id);
    // On disk before the first segment, flushed: 32 hex digits.
    assert!(segment_files(dir.path()).is_empty());
    let text = std::fs::read_to_string(dir.path().join("id")).unwrap();
    assert_eq!(text, format!("{id}\n"));
    let mut j = j;
    j.writer.append(at(), vec![granted("a")]).unwrap();
    drop(j);
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.id(), id, "read at open, never made again");
    drop(j);
    // Another journal is another id.
    let other = tempfile::tempdir().unwrap();
    assert_ne!(Journal::open(other.path()).unwrap().id(), id);
}

#[test]
fn a_journal_of_an_earlier_version_is_the_nil_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.writer.append(at(), vec![granted("a")]).unwrap();
    drop(j);
    // Written before journals had ids: segments, no id file.
    std::fs::remove_file(dir.path().join("id")).unwrap();
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.id(), JournalId::NIL);
    drop(j);
    assert!(
        !dir.path().join("id").exists(),
        "nothing written: it stays the nil journal"
    );
    assert_eq!(Journal::open(dir.path()).unwrap().id(), JournalId::NIL);
}

#[test]
fn an_unreadable_id_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.writer.append(at(), vec![granted("a")]).unwrap();
    drop(j);
    std::fs::write(dir.path().join("id"), "not an id\n").unwrap();
    let e = Journal::open(dir.path()).unwrap_err();
    assert!(matches!(e, JournalError::IdUnreadable { .. }), "{e}");
    // An id write interrupted before its rename is not an id.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::write(fresh.path().join("id.tmp"), "ab").unwrap();
    let j = Journal::open(fresh.path()).unwrap();
    assert!(!j.id().is_nil());
    assert!(!fresh.path().join("id.tmp").exists());
}

#[test]
fn a_journal_moved_aside_opens_to_drain_even_with_its_state_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    let id = j.id();
    j.writer
        .commit(
            at(),
            vec![granted("a"), granted("b")],
            Some(b"lockdown".to_vec()),
        )
        .unwrap();
    drop(j);
    std::fs::write(dir.path().join(segment::file_name(3)), segment::MAGIC).unwrap();
    assert!(matches!(
        Journal::open(dir.path()),
        Err(JournalError::StateUnreadable(..))
    ));
    let mut j = Journal::open_to_drain(dir.path()).unwrap();
    assert_eq!(j.id(), id);
    assert_eq!(j.state, None, "a drain never reads the state");
    let seqs: Vec<u64> = j
        .reader
        .records(0, 10)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(j.acker.delete_through(2).unwrap(), 2);
    assert!(j.reader.is_empty());
    drop(j);
    // Nothing to drain where there is no journal, and nothing is created.
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("journal.old");
    assert!(matches!(
        Journal::open_to_drain(&missing),
        Err(JournalError::NotAJournal(_))
    ));
    assert!(!missing.exists());
    assert!(matches!(
        Journal::open_to_drain(empty.path()),
        Err(JournalError::NotAJournal(_))
    ));
    assert!(!empty.path().join("id").exists());
}
