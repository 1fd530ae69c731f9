//! Segment files: the journal is a directory of append-only files, each
//! named by the sequence number of its first frame and opened by a magic
//! header, written only at the end, and deleted whole once central has
//! acknowledged everything in it. Reading goes through a sparse index of
//! frame offsets, built lazily as frames are first passed, so finding a
//! sequence number costs a binary search and a read of about
//! [`INDEX_EVERY`] bytes (one [`READ_CHUNK`] at least) — never a scan of
//! the backlog.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::frame::{self, Frame, Parsed, Salt};

/// The first bytes of every segment file (format version 2: salted).
pub(super) const MAGIC: &[u8; 8] = b"PRTJRNL2";
/// Magic and salt: where the first frame starts.
pub(super) const HEAD: u64 = 16;
/// The file name's extension.
const EXTENSION: &str = "seg";
/// One index point per this many bytes of segment.
const INDEX_EVERY: u64 = 64 << 10;
/// How far past damaged bytes to search for the next frame: commits are
/// small (an earlier version's journal is moved in frames of ~260 KiB),
/// and the search costs a checksum per plausible length.
const RESYNC_WINDOW: u64 = 1 << 20;
/// How much a scan reads at a time.
const READ_CHUNK: usize = 256 << 10;

/// The file name of the segment whose first frame has `first_seq`.
pub(super) fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.{EXTENSION}")
}

/// The first sequence number named by a segment file name, if it is one.
pub(super) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(EXTENSION)?.strip_suffix('.')?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The segments in `dir`, sorted by first sequence number.
pub(super) fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_name) {
            found.push((first, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(first, _)| *first);
    Ok(found)
}

/// One segment file as readers see it.
#[derive(Debug)]
pub(super) struct Segment {
    /// The sequence number of its first frame (its name).
    pub first_seq: u64,
    /// Its path, for deletion.
    pub path: PathBuf,
    /// A read handle (positional reads; shared by every reader).
    file: File,
    /// The checksum salt from its header.
    salt: Salt,
    /// Bytes committed: readers never look beyond (the writer is ahead).
    end: AtomicU64,
    /// Frame offsets seen so far.
    index: Mutex<SparseIndex>,
}

#[derive(Debug)]
struct SparseIndex {
    /// `(first_seq, offset)` of frames, at least [`INDEX_EVERY`] apart.
    points: Vec<(u64, u64)>,
    /// The offset up to which frames were walked.
    walked_to: u64,
    /// The first sequence number of the frame at `walked_to`.
    next_seq: u64,
    /// Whether walking stopped on bytes that are not a frame.
    damaged: bool,
}

/// Unreadable bytes inside the committed part of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Damage {
    /// Where in the file.
    pub offset: u64,
    /// Why.
    pub reason: &'static str,
}

/// What a read of one segment found.
#[derive(Debug, Default)]
pub(super) struct Read {
    /// `(seq, cbor)` in order; `Err` for an event of a damaged frame.
    pub events: Vec<(u64, Result<Vec<u8>, Damage>)>,
    /// The sequence number after the last frame read.
    pub next_seq: u64,
    /// Set when the segment could not be read to its end.
    pub damage: Option<Damage>,
    /// Bytes of the events read.
    pub bytes: usize,
}

impl Segment {
    /// A segment with `end` bytes committed.
    pub(super) fn open(first_seq: u64, path: PathBuf, end: u64) -> std::io::Result<Self> {
        let file = File::open(&path)?;
        let salt = read_head(&file, &path)?;
        Ok(Self {
            first_seq,
            path,
            file,
            salt,
            end: AtomicU64::new(end),
            index: Mutex::new(SparseIndex {
                points: vec![(first_seq, HEAD)],
                walked_to: HEAD,
                next_seq: first_seq,
                damaged: false,
            }),
        })
    }

    /// Its checksum salt.
    pub(super) fn salt(&self) -> Salt {
        self.salt
    }

    /// Bytes committed.
    pub(super) fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// The writer committed up to `end`.
    pub(super) fn set_end(&self, end: u64) {
        self.end.store(end, Ordering::Release);
    }

    /// Up to `limit` events with sequence numbers in `from..until`, and
    /// the damage that stopped the read, if any. The events of a damaged
    /// frame that was stepped over come back as `Err`.
    pub(super) fn read(
        &self,
        from: u64,
        until: u64,
        limit: usize,
        max_bytes: usize,
    ) -> std::io::Result<Read> {
        let end = self.end();
        let (start, start_seq) = self.locate(from, end)?;
        let mut read = Read {
            next_seq: start_seq,
            ..Read::default()
        };
        let stop = scan(
            &self.file,
            &self.salt,
            start,
            end,
            |offset, _, frame, stepped_over| {
                // Numbers a frame skips were in a damaged commit (or never
                // written): reported, so the reader leaves no gap.
                if frame.first_seq > read.next_seq {
                    let damage = stepped_over.unwrap_or(Damage {
                        offset,
                        reason: "sequence numbers missing between commits",
                    });
                    for seq in read.next_seq.max(from)..frame.first_seq.min(until) {
                        if read.events.len() >= limit {
                            return false;
                        }
                        read.events.push((seq, Err(damage)));
                    }
                    read.next_seq = frame.first_seq;
                }
                for (seq, bytes) in frame.events() {
                    if seq >= until || read.events.len() >= limit {
                        return false;
                    }
                    // A frame that goes back over numbers already read is
                    // damage, not news: never a duplicate or a step back.
                    if seq >= from && seq >= read.next_seq {
                        read.bytes = read.bytes.saturating_add(bytes.len());
                        read.events.push((seq, Ok(bytes.to_vec())));
                    }
                    read.next_seq = read.next_seq.max(seq + 1);
                    if read.bytes >= max_bytes {
                        return false;
                    }
                }
                read.events.len() < limit && read.next_seq < until
            },
        )?;
        if let Scan::Bad { offset, reason, .. } = stop {
            read.damage = Some(Damage { offset, reason });
        }
        Ok(read)
    }

    /// The offset and first sequence number of the indexed frame to start
    /// reading `seq` from, walking (and indexing) frames not seen yet.
    fn locate(&self, seq: u64, end: u64) -> std::io::Result<(u64, u64)> {
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        if index.next_seq <= seq && index.walked_to < end && !index.damaged {
            let SparseIndex {
                points,
                walked_to,
                next_seq,
                damaged,
            } = &mut *index;
            let stop = scan(
                &self.file,
                &self.salt,
                *walked_to,
                end,
                |offset, len, frame, _| {
                    let (last_seq, last_offset) = points.last().copied().unwrap_or_default();
                    // Points stay sorted by number, whatever the file holds.
                    if offset >= last_offset + INDEX_EVERY && frame.first_seq >= last_seq {
                        points.push((frame.first_seq, offset));
                    }
                    *walked_to = offset + len;
                    *next_seq = (*next_seq).max(frame.next_seq());
                    *next_seq <= seq
                },
            )?;
            // A read from the last point meets the damage and reports it.
            *damaged = matches!(stop, Scan::Bad { .. });
        }
        let at = index.points.partition_point(|p| p.0 <= seq).max(1) - 1;
        let (first, offset) = index.points[at];
        Ok((offset, first))
    }
}

/// How a scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    /// At `end`, or where the visitor said stop; the offset after the last
    /// frame visited.
    Clean(u64),
    /// On bytes that are not a frame, at this offset, with nothing whole
    /// after them.
    Bad {
        /// Where.
        offset: u64,
        /// Why.
        reason: &'static str,
        /// Whether this can be the commit that was being written (nothing
        /// came after it), rather than a damaged commit that a later write
        /// followed.
        torn: bool,
    },
}

/// Visit the frames of `file` from `start` up to `end` in order; the
/// visitor gets each frame's offset and length, and the damage stepped
/// over just before it, and returns whether to go on. Bytes that are not a
/// frame are stepped over when a whole frame follows them (found by its
/// own length, or by searching forward for the next frame whose checksum
/// holds), so one flipped bit costs one commit, not the rest of the
/// segment. `Bad` is returned only when nothing whole follows: a torn tail.
pub(super) fn scan(
    file: &File,
    salt: &Salt,
    start: u64,
    end: u64,
    mut visit: impl FnMut(u64, u64, &Frame<'_>, Option<Damage>) -> bool,
) -> std::io::Result<Scan> {
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_at = start; // file offset of buf[0]
    let mut pos = 0usize; // parse position in buf
    let mut stepped_over: Option<Damage> = None;
    // A whole-length damaged frame with bytes after it: a later write
    // followed it, so it is not the torn commit being written.
    let mut followed = false;
    loop {
        let offset = buf_at + pos as u64;
        if offset >= end {
            return Ok(match stepped_over {
                Some(d) => Scan::Bad {
                    offset: d.offset,
                    reason: d.reason,
                    torn: !followed,
                },
                None => Scan::Clean(offset),
            });
        }
        let available = end - offset;
        let step = match frame::parse(&buf[pos..], salt) {
            Parsed::Frame(frame, len) if len as u64 <= available => {
                pos += len;
                followed = false;
                if !visit(offset, len as u64, &frame, stepped_over.take()) {
                    return Ok(Scan::Clean(offset + len as u64));
                }
                continue;
            }
            Parsed::Frame(..) => Step::Bad("frame runs past the committed end"),
            Parsed::Damaged(len, reason) => {
                let after = offset + len as u64;
                followed |= after < end;
                match frame::parse(buf.get(pos + len..).unwrap_or_default(), salt) {
                    _ if after == end => Step::Over(len, reason),
                    Parsed::Frame(..) if after < end => Step::Over(len, reason),
                    // The next frame may just not be in the buffer yet.
                    Parsed::Short(n) if after < end && buf.len() - pos < len + n => {
                        Step::Need(len + n)
                    }
                    _ => Step::Bad(reason),
                }
            }
            Parsed::Short(need) if need as u64 <= available => Step::Need(need),
            Parsed::Short(_) => Step::Bad(CUT_SHORT),
            Parsed::Bad(reason) => Step::Bad(reason),
        };
        let step = match step {
            // The frame claims bytes past the end: a torn or damaged tail.
            Step::Need(need) if need as u64 > available => Step::Bad(CUT_SHORT),
            step => step,
        };
        match step {
            Step::Need(need) => {
                // Refill: keep the unparsed tail, read at least `need`.
                buf.drain(..pos);
                buf_at = offset;
                pos = 0;
                let want = need.max(READ_CHUNK).min(available as usize);
                let have = buf.len();
                if want > have {
                    buf.resize(want, 0);
                    file.read_exact_at(&mut buf[have..], offset + have as u64)?;
                }
            }
            Step::Over(len, reason) => {
                stepped_over.get_or_insert(Damage { offset, reason });
                pos += len;
            }
            Step::Bad(reason) => {
                match resync(file, salt, offset + 1, end, window(reason, available))? {
                    Some(next) => {
                        stepped_over.get_or_insert(Damage { offset, reason });
                        buf.clear();
                        buf_at = next;
                        pos = 0;
                    }
                    None => {
                        let first = stepped_over.unwrap_or(Damage { offset, reason });
                        // Bytes beyond the search window were not looked at:
                        // not provably a torn tail.
                        let unsearched = end.saturating_sub(offset + 1) > window(reason, available);
                        return Ok(Scan::Bad {
                            offset: first.offset,
                            reason: first.reason,
                            torn: !followed && !unsearched,
                        });
                    }
                }
            }
        }
    }
}

/// Why a frame whose header claims more bytes than the segment holds is
/// refused: the commit being written when the process or power went.
const CUT_SHORT: &str = "frame cut short";

/// How far past bad bytes to search for the next whole frame. After a
/// frame cut short, all the way to the end: the bytes left all lie inside
/// the frame's own claimed length (at most a frame's size), so if no whole
/// frame hides there the frame is a torn last write, whatever its size (a
/// 2 MB commit cut at 1.2 MB must not stop the journal from opening).
/// Elsewhere [`RESYNC_WINDOW`].
fn window(reason: &str, available: u64) -> u64 {
    if reason == CUT_SHORT {
        available.min((frame::HEADER + frame::MAX_BODY) as u64)
    } else {
        RESYNC_WINDOW
    }
}

/// What to do at the parse position.
enum Step {
    /// Read until this many bytes are buffered.
    Need(usize),
    /// A damaged frame of this length with a frame (or the end) after it.
    Over(usize, &'static str),
    /// Not a frame: search for the next one.
    Bad(&'static str),
}

/// The offset of the first whole frame in `from..end` (within `window`
/// bytes), if any: after bytes that are not a frame, where the commits go
/// on.
fn resync(
    file: &File,
    salt: &Salt,
    from: u64,
    end: u64,
    window: u64,
) -> std::io::Result<Option<u64>> {
    if from >= end {
        return Ok(None);
    }
    let len = (end - from).min(window);
    let mut rest = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut rest, from)?;
    Ok((0..rest.len())
        .find(|&i| matches!(frame::parse(&rest[i..], salt), Parsed::Frame(..)))
        .map(|i| from + i as u64))
}

/// Check a segment's magic and read its salt.
pub(super) fn read_head(file: &File, path: &Path) -> std::io::Result<Salt> {
    let mut head = [0u8; HEAD as usize];
    file.read_exact_at(&mut head, 0).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("{}: no segment header: {e}", path.display()),
        )
    })?;
    if &head[..MAGIC.len()] != MAGIC {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{}: not a Portier journal segment (version 2)",
                path.display()
            ),
        ));
    }
    let mut salt = Salt::default();
    salt.copy_from_slice(&head[MAGIC.len()..]);
    Ok(salt)
}
