//! Moving a journal written by an earlier Portier version — the sled trees
//! `journal.events`, `journal.meta` and `standing` of the `events/`
//! database — into the segment journal, once, at the first start of this
//! version. Nothing is lost: the events keep their sequence numbers, the
//! acknowledged bound, the dropped counter and the standing state move
//! with them. The new journal is built beside the old one and renamed into
//! place; only then are the sled trees dropped, so a crash at any point
//! leaves either the old journal or the new one whole.

use std::path::Path;

use super::{Journal, JournalError};

const EVENTS_TREE: &str = "journal.events";
const META_TREE: &str = "journal.meta";
const STANDING_TREE: &str = "standing";
const STANDING_KEY: &[u8] = b"state";
const NEXT_SEQ: &[u8] = b"next_seq";
const OLDEST: &[u8] = b"oldest";
const DROPPED: &[u8] = b"dropped";
/// Events per frame while moving (~260 KiB: well inside the distance a
/// reader searches past a damaged frame for the next one).
const CHUNK: usize = 2_000;

/// What was moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// Events not yet acknowledged, now in the segment journal.
    pub events: u64,
    /// Whether a standing state came along.
    pub state: bool,
}

/// Move the sled journal in `db` into the segment journal at `dir`, if
/// there is one and `dir` holds no journal yet. Sled trees left behind by
/// an interrupted earlier move are dropped. `progress` hears the number of
/// events moved so far after every chunk (a long move asks systemd for
/// more start time with it).
pub fn migrate(
    db: &sled::Db,
    dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Option<Moved>, JournalError> {
    let io = |source| JournalError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let names = db.tree_names();
    let has = |name: &str| names.iter().any(|n| n.as_ref() == name.as_bytes());
    if !has(EVENTS_TREE) && !has(STANDING_TREE) && !has(META_TREE) {
        return Ok(None);
    }
    let already = dir.exists() && !super::segment::list(dir).map_err(io)?.is_empty();
    if already {
        drop_legacy(db)?;
        return Ok(None);
    }
    let events = db.open_tree(EVENTS_TREE)?;
    let meta = db.open_tree(META_TREE)?;
    let state = db.open_tree(STANDING_TREE)?.get(STANDING_KEY)?;
    let read = |key: &[u8]| -> Result<Option<u64>, JournalError> {
        Ok(meta
            .get(key)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes))
    };
    let next_seq = match read(NEXT_SEQ)? {
        Some(n) => n,
        None => events.last()?.map_or(1, |(k, _)| key_seq(&k) + 1),
    };
    let oldest = match read(OLDEST)? {
        Some(o) => o,
        None => events.first()?.map_or(next_seq, |(k, _)| key_seq(&k)),
    }
    .min(next_seq);
    let dropped = read(DROPPED)?.unwrap_or(0);

    let building = dir.with_extension("moving");
    if building.exists() {
        std::fs::remove_dir_all(&building).map_err(io)?;
    }
    let mut moved = 0u64;
    {
        // Central stored this journal's events before journals had ids:
        // under the nil id, which the moved journal keeps.
        super::id::write(&building, super::JournalId::NIL).map_err(io)?;
        let mut journal = Journal::open(&building)?;
        // The first frame: the bound, the counter and the state, so that
        // even an empty journal keeps its numbering.
        journal.writer.import(
            oldest,
            &[],
            Some(dropped),
            state.as_ref().map(|s| s.to_vec()),
        )?;
        let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK);
        let mut chunk_first = oldest;
        for item in events.range(oldest.to_be_bytes()..) {
            let (key, bytes) = item?;
            let seq = key_seq(&key);
            if seq >= next_seq {
                break;
            }
            if seq < chunk_first + chunk.len() as u64 {
                // Not an 8-byte key, or out of order: not an event of ours.
                tracing::warn!(key = ?key.as_ref(), "journal move: skipping a malformed key");
                continue;
            }
            if seq != chunk_first + chunk.len() as u64 || chunk.len() == CHUNK {
                if !chunk.is_empty() {
                    journal.writer.import(chunk_first, &chunk, None, None)?;
                    progress(moved);
                }
                chunk.clear();
                chunk_first = seq;
            }
            chunk.push(bytes.to_vec());
            moved += 1;
        }
        if !chunk.is_empty() {
            journal.writer.import(chunk_first, &chunk, None, None)?;
        }
        // Numbering goes on after the last number the old journal gave.
        if journal.writer.next_seq() < next_seq {
            journal.writer.import(next_seq, &[], None, None)?;
        }
        journal.acker.delete_through(oldest.saturating_sub(1))?;
    }
    if dir.exists() {
        // No segments in it (checked above): a lock file at most.
        std::fs::remove_dir_all(dir).map_err(io)?;
    }
    std::fs::rename(&building, dir).map_err(io)?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
    }
    drop_legacy(db)?;
    Ok(Some(Moved {
        events: moved,
        state: state.is_some(),
    }))
}

fn drop_legacy(db: &sled::Db) -> Result<(), JournalError> {
    for tree in [EVENTS_TREE, META_TREE, STANDING_TREE] {
        db.drop_tree(tree)?;
    }
    db.flush()?;
    Ok(())
}

/// Old event keys are the big-endian sequence number.
fn key_seq(key: &[u8]) -> u64 {
    <[u8; 8]>::try_from(key).map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind};

    fn event(seq: u64) -> Vec<u8> {
        serde_cbor::to_vec(&Event {
            seq,
            at: "2026-11-23T18:30:00Z".parse().unwrap(),
            kind: EventKind::DoorForced {
                door: format!("door-{seq}").into(),
            },
        })
        .unwrap()
    }

    #[test]
    fn an_old_journal_moves_over_with_its_numbers_state_and_counter() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::storage::open_db(&dir.path().join("events"), 1 << 20).unwrap();
        let events = db.open_tree(EVENTS_TREE).unwrap();
        for seq in 5u64..=25_012 {
            events.insert(seq.to_be_bytes(), event(seq)).unwrap();
        }
        let meta = db.open_tree(META_TREE).unwrap();
        meta.insert(NEXT_SEQ, &25_013u64.to_be_bytes()).unwrap();
        meta.insert(OLDEST, &7u64.to_be_bytes()).unwrap();
        meta.insert(DROPPED, &42u64.to_be_bytes()).unwrap();
        db.open_tree(STANDING_TREE)
            .unwrap()
            .insert(STANDING_KEY, &b"lockdown"[..])
            .unwrap();
        let journal_dir = dir.path().join("journal");
        let moved = migrate(&db, &journal_dir, &mut |_| {}).unwrap();
        assert_eq!(
            moved,
            Some(Moved {
                events: 25_006,
                state: true
            })
        );
        assert!(
            !db.tree_names()
                .iter()
                .any(|n| n.as_ref() == EVENTS_TREE.as_bytes())
        );
        let mut j = Journal::open(&journal_dir).unwrap();
        // Central has this journal's events under the nil id.
        assert_eq!(j.id(), crate::journal::JournalId::NIL);
        assert_eq!(j.state.as_deref(), Some(&b"lockdown"[..]));
        assert_eq!((j.reader.oldest(), j.reader.len()), (Some(7), 25_006));
        assert_eq!(j.reader.dropped(), 42);
        let all = j.reader.records(0, 30_000).unwrap();
        assert_eq!(all.first().unwrap().seq, 7);
        assert!(all.iter().all(|r| r.bytes == event(r.seq)));
        let at = "2026-11-23T19:00:00Z".parse().unwrap();
        let next = j
            .writer
            .append(at, vec![EventKind::DoorForced { door: "x".into() }]);
        assert_eq!(next.unwrap()[0].seq, 25_013);
        // Twice is once.
        drop(j);
        assert_eq!(migrate(&db, &journal_dir, &mut |_| {}).unwrap(), None);
    }

    #[test]
    fn an_acknowledged_old_journal_keeps_its_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::storage::open_db(&dir.path().join("events"), 1 << 20).unwrap();
        let meta = db.open_tree(META_TREE).unwrap();
        meta.insert(NEXT_SEQ, &900u64.to_be_bytes()).unwrap();
        meta.insert(OLDEST, &900u64.to_be_bytes()).unwrap();
        let journal_dir = dir.path().join("journal");
        migrate(&db, &journal_dir, &mut |_| {}).unwrap();
        let j = Journal::open(&journal_dir).unwrap();
        assert_eq!(
            (j.writer.next_seq(), j.reader.len(), j.state),
            (900, 0, None)
        );
    }
}
