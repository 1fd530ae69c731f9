//! The store's plain files beside sled: the last-good signed snapshot of a
//! generation, the signed deltas applied on top of it, and the highest
//! version ever accepted.
//!
//! Why: sled 0.34 can report corruption on reopen after a kill. Every
//! accepted blob is durable here *before* sled's current pointer moves, so
//! the rules in force can always be rebuilt (and re-verified) from these
//! files, and rollback protection does not depend on sled at all.
//!
//! Durability: whole files are written to `NAME.tmp`, fsynced, renamed and
//! the directory fsynced. The deltas file is an append-only log of
//! `len:u32be ‖ blob` frames, fsynced per append; a torn last frame is
//! ignored and cut off.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const HIGHEST: &str = "highest";

fn snapshot_name(generation: u64) -> String {
    format!("snapshot-{generation:020}.bin")
}

fn deltas_name(generation: u64) -> String {
    format!("deltas-{generation:020}.log")
}

/// The last-good snapshot file of `generation`.
pub(super) fn snapshot_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(snapshot_name(generation))
}

fn deltas_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(deltas_name(generation))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Write `name` atomically: tmp, fsync, rename, fsync the directory.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Make `bytes` the last-good snapshot of `generation`, with no deltas.
pub(super) fn write_snapshot(dir: &Path, generation: u64, bytes: &[u8]) -> io::Result<()> {
    match fs::remove_file(deltas_path(dir, generation)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    write_atomic(dir, &snapshot_name(generation), bytes)
}

/// The highest version accepted and its payload digest, if recorded.
pub(super) fn read_highest(dir: &Path) -> io::Result<Option<(u64, [u8; 32])>> {
    let text = match fs::read_to_string(dir.join(HIGHEST)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("bad {HIGHEST} file"));
    let (v, d) = text.trim().split_once(' ').ok_or_else(bad)?;
    let digest = hex::decode(d).ok().and_then(|d| d.try_into().ok());
    match (v.parse(), digest) {
        (Ok(v), Some(d)) => Ok(Some((v, d))),
        _ => Err(bad()),
    }
}

/// Record the highest version accepted (atomically).
pub(super) fn write_highest(dir: &Path, (version, digest): (u64, [u8; 32])) -> io::Result<()> {
    let text = format!("{version} {}\n", hex::encode(digest));
    write_atomic(dir, HIGHEST, text.as_bytes())
}

/// Append a delta blob to the log of `generation` and fsync it.
pub(super) fn append_delta(dir: &Path, generation: u64, blob: &[u8]) -> io::Result<()> {
    let path = deltas_path(dir, generation);
    let created = !path.exists();
    let len = u32::try_from(blob.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "delta over 4 GiB"))?;
    let mut frame = Vec::with_capacity(4 + blob.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(blob);
    let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
    f.write_all(&frame)?;
    f.sync_data()?;
    if created {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The complete delta frames of `generation`, in order, with the byte
/// offset after each.
pub(super) fn read_deltas(dir: &Path, generation: u64) -> io::Result<Vec<(Vec<u8>, u64)>> {
    let bytes = match fs::read(deltas_path(dir, generation)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(len) = bytes.get(at..at + 4) {
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(blob) = bytes.get(at + 4..at + 4 + len) else {
            break;
        };
        at += 4 + len;
        out.push((blob.to_vec(), at as u64));
    }
    Ok(out)
}

/// Cut the delta log of `generation` after `keep` frames (a frame appended
/// before a crash that sled never took up, or a torn tail).
pub(super) fn truncate_deltas(dir: &Path, generation: u64, keep: usize) -> io::Result<()> {
    let path = deltas_path(dir, generation);
    let Ok(meta) = fs::metadata(&path) else {
        return Ok(());
    };
    let frames = read_deltas(dir, generation)?;
    let end = match keep {
        0 => 0,
        k => frames.get(k - 1).map_or(meta.len(), |f| f.1),
    };
    if meta.len() > end {
        let f = OpenOptions::new().write(true).open(&path)?;
        f.set_len(end)?;
        f.sync_all()?;
    }
    Ok(())
}

fn generation_of(name: &str) -> Option<u64> {
    let rest = name
        .strip_prefix("snapshot-")
        .or_else(|| name.strip_prefix("deltas-"))?;
    let (g, ext) = rest.split_once('.')?;
    matches!(ext, "bin" | "log" | "bin.tmp").then_some(())?;
    g.parse().ok()
}

/// Generations that have a complete last-good snapshot file, ascending.
pub(super) fn generations(dir: &Path) -> io::Result<Vec<u64>> {
    let mut gens = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snapshot-")
            && name.ends_with(".bin")
            && let Some(g) = generation_of(&name)
        {
            gens.push(g);
        }
    }
    gens.sort_unstable();
    Ok(gens)
}

/// Remove the files of every generation but `keep`, and stray tmp files.
pub(super) fn remove_other_generations(dir: &Path, keep: Option<u64>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let stray_tmp = name.ends_with(".tmp") && name != format!("{HIGHEST}.tmp");
        if stray_tmp || generation_of(&name).is_some_and(|g| Some(g) != keep) {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Move the sled directory aside for forensics (`NAME.corrupt-N`) and
/// return where it went.
pub(super) fn move_aside(dir: &Path, name: &str) -> io::Result<PathBuf> {
    let from = dir.join(name);
    let to = (1..)
        .map(|n| dir.join(format!("{name}.corrupt-{n}")))
        .find(|p| !p.exists())
        .expect("an unused name among unbounded candidates");
    fs::rename(&from, &to)?;
    sync_dir(dir)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_log_keeps_complete_frames_and_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        append_delta(d, 3, b"one").unwrap();
        append_delta(d, 3, b"two").unwrap();
        // A torn third frame: length says 10, 2 bytes follow.
        let mut f = OpenOptions::new()
            .append(true)
            .open(deltas_path(d, 3))
            .unwrap();
        f.write_all(&[0, 0, 0, 10, 1, 2]).unwrap();
        let frames = read_deltas(d, 3).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].0, b"two");
        truncate_deltas(d, 3, 1).unwrap();
        assert_eq!(read_deltas(d, 3).unwrap().len(), 1);
        assert_eq!(fs::metadata(deltas_path(d, 3)).unwrap().len(), 7);
        append_delta(d, 3, b"three").unwrap();
        let frames = read_deltas(d, 3).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].0, b"three");
    }

    #[test]
    fn generations_highest_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(read_highest(d).unwrap(), None);
        write_highest(d, (7, [9; 32])).unwrap();
        assert_eq!(read_highest(d).unwrap(), Some((7, [9; 32])));
        write_snapshot(d, 1, b"a").unwrap();
        write_snapshot(d, 2, b"b").unwrap();
        append_delta(d, 1, b"x").unwrap();
        fs::write(d.join(format!("{}.tmp", snapshot_name(3))), b"torn").unwrap();
        assert_eq!(generations(d).unwrap(), vec![1, 2]);
        remove_other_generations(d, Some(2)).unwrap();
        let mut left: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec![HIGHEST.to_owned(), snapshot_name(2)]);
        fs::write(d.join(HIGHEST), "x").unwrap();
        assert!(read_highest(d).is_err());
    }
}
