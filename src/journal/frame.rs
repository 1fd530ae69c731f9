//! The journal's on-disk frame: one commit (its events, and the standing
//! state and dropped counter when they travel with it) under one length and
//! one CRC, so that a commit is on disk whole or not at all.
//!
//! ```text
//! frame  = len:u32le crc:u32le body            crc = CRC-32 of salt ‖ body
//! body   = first_seq:u64le flags:u8
//!          [dropped:u64le]                     flags & DROPPED
//!          [state_len:varint state]            flags & STATE
//!          [n:varint (len:varint change)*n]    flags & CHANGES
//!          (event_len:varint event_cbor)*      seqs first_seq, first_seq+1, …
//! ```
//!
//! The state is kept as a whole (`STATE`) and the changes written after it
//! (`CHANGES`, applied in order by the state's owner): a passage changes
//! one line of the presence list and should cost that line, not the list.
//! A frame with both is a segment's head: the whole, then the changes
//! since it.
//!
//! The salt is the segment's own (random, in its header): an event's text
//! (a user name as typed at the admin login, say) can hold bytes shaped
//! like a frame, and a reader searching past damaged bytes for the next
//! frame must not take those for a commit. Without the salt their checksum
//! cannot be made to hold.
//!
//! Pure: bytes in, bytes or a parsed view out. Lengths are LEB128 varints
//! (one or two bytes for an event), so a one-event commit costs 19 bytes of
//! framing, not sled's page and key overhead.

/// A segment's checksum salt.
pub(super) type Salt = [u8; 8];

fn checksum(salt: &Salt, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(salt);
    h.update(body);
    h.finalize()
}

/// Bytes of `len` and `crc` before every body.
pub(super) const HEADER: usize = 8;
/// The largest body accepted: a length above it is damage, not a frame
/// (a corrupt length must not make a reader allocate gigabytes).
pub(super) const MAX_BODY: usize = 64 << 20;

const FLAG_DROPPED: u8 = 1;
const FLAG_STATE: u8 = 2;
const FLAG_CHANGES: u8 = 4;
const KNOWN_FLAGS: u8 = FLAG_DROPPED | FLAG_STATE | FLAG_CHANGES;

/// What one frame carries, to be encoded.
#[derive(Debug, Clone, Copy)]
pub(super) struct FrameOut<'a> {
    /// The sequence number of the first event (the next one when empty).
    pub first_seq: u64,
    /// The dropped counter, when it changed or the frame opens a segment.
    pub dropped: Option<u64>,
    /// The standing state, when it was written whole or the frame opens
    /// a segment.
    pub state: Option<&'a [u8]>,
    /// Changes to the state, in order (after `state` when both are given).
    pub changes: &'a [&'a [u8]],
}

/// Append the frame of `out` and `events` (CBOR, in sequence order) to `buf`.
pub(super) fn encode<'e>(
    buf: &mut Vec<u8>,
    salt: &Salt,
    out: FrameOut<'_>,
    events: impl IntoIterator<Item = &'e [u8]>,
) {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    buf.extend_from_slice(&out.first_seq.to_le_bytes());
    let flags = if out.dropped.is_some() {
        FLAG_DROPPED
    } else {
        0
    } | if out.state.is_some() { FLAG_STATE } else { 0 }
        | if out.changes.is_empty() {
            0
        } else {
            FLAG_CHANGES
        };
    buf.push(flags);
    if let Some(dropped) = out.dropped {
        buf.extend_from_slice(&dropped.to_le_bytes());
    }
    if let Some(state) = out.state {
        put_varint(buf, state.len() as u64);
        buf.extend_from_slice(state);
    }
    if !out.changes.is_empty() {
        put_varint(buf, out.changes.len() as u64);
        for change in out.changes {
            put_varint(buf, change.len() as u64);
            buf.extend_from_slice(change);
        }
    }
    for event in events {
        put_varint(buf, event.len() as u64);
        buf.extend_from_slice(event);
    }
    let body = &buf[start + HEADER..];
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let crc = checksum(salt, body);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// A frame read back, borrowing the buffer it was read into.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frame<'a> {
    /// The sequence number of the first event.
    pub first_seq: u64,
    /// The dropped counter, if the frame carries it.
    pub dropped: Option<u64>,
    /// The standing state, if the frame carries it whole.
    pub state: Option<&'a [u8]>,
    /// The changes region (varint-prefixed), checked to parse.
    changes: &'a [u8],
    /// The events region (varint-prefixed CBOR), checked to parse.
    events: &'a [u8],
    /// How many events the region holds.
    pub count: u64,
}

impl<'a> Frame<'a> {
    /// The events, with their sequence numbers, in order.
    pub(super) fn events(&self) -> impl Iterator<Item = (u64, &'a [u8])> + 'a {
        let mut seq = self.first_seq;
        pieces(self.events).map(move |bytes| {
            seq += 1;
            (seq - 1, bytes)
        })
    }

    /// The state changes, in order.
    pub(super) fn changes(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        pieces(self.changes)
    }

    /// The sequence number after this frame's events.
    pub(super) fn next_seq(&self) -> u64 {
        self.first_seq.saturating_add(self.count)
    }
}

/// What the bytes at the start of a buffer are.
#[derive(Debug)]
pub(super) enum Parsed<'a> {
    /// A whole, intact frame and its length in bytes.
    Frame(Frame<'a>, usize),
    /// The frame goes on beyond the buffer: this many bytes are needed.
    Short(usize),
    /// A frame of plausible length whose checksum or body is wrong (disk
    /// damage): its length, so that a reader may step over it if a frame
    /// follows, and the reason.
    Damaged(usize, &'static str),
    /// Not a frame (a torn write, or damage); the reason.
    Bad(&'static str),
}

/// Parse the frame at the start of `buf`, checked with `salt`.
pub(super) fn parse<'b>(buf: &'b [u8], salt: &Salt) -> Parsed<'b> {
    if buf.len() < HEADER {
        return Parsed::Short(HEADER);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if !(9..=MAX_BODY).contains(&len) {
        return Parsed::Bad("frame length out of range");
    }
    let total = HEADER + len;
    let Some(body) = buf.get(HEADER..total) else {
        return Parsed::Short(total);
    };
    if checksum(salt, body) != crc {
        return Parsed::Damaged(total, "frame checksum mismatch");
    }
    match parse_body(body) {
        Some(frame) => Parsed::Frame(frame, total),
        None => Parsed::Damaged(total, "frame body malformed"),
    }
}

fn parse_body(body: &[u8]) -> Option<Frame<'_>> {
    let first_seq = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
    let flags = *body.get(8)?;
    if flags & !KNOWN_FLAGS != 0 {
        return None;
    }
    let mut rest = &body[9..];
    let dropped = if flags & FLAG_DROPPED != 0 {
        let d = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
        rest = &rest[8..];
        Some(d)
    } else {
        None
    };
    let state = if flags & FLAG_STATE != 0 {
        let (state, after) = piece(rest)?;
        rest = after;
        Some(state)
    } else {
        None
    };
    let changes = if flags & FLAG_CHANGES != 0 {
        let (n, used) = get_varint(rest)?;
        let start = &rest[used..];
        let mut walk = start;
        for _ in 0..n {
            walk = piece(walk)?.1;
        }
        let region = &start[..start.len() - walk.len()];
        rest = walk;
        region
    } else {
        &[]
    };
    // Walk the events once so that a reader never meets a bad length.
    let mut count = 0u64;
    let mut walk = rest;
    while !walk.is_empty() {
        walk = piece(walk)?.1;
        count += 1;
    }
    first_seq.checked_add(count)?;
    Some(Frame {
        first_seq,
        dropped,
        state,
        changes,
        events: rest,
        count,
    })
}

/// One varint-prefixed piece at the start of `buf`, and what follows it.
fn piece(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, used) = get_varint(buf)?;
    let end = used.checked_add(usize::try_from(len).ok()?)?;
    Some((buf.get(used..end)?, buf.get(end..)?))
}

/// The varint-prefixed pieces of a region checked by [`parse_body`].
fn pieces(mut region: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (bytes, rest) = piece(region)?;
        region = rest;
        Some(bytes)
    })
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A LEB128 value and the bytes it took; `None` when cut short or longer
/// than a `u64`.
fn get_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        let part = u64::from(b & 0x7f);
        if i == 9 && part > 1 {
            return None;
        }
        v |= part << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: Salt = *b"saltsalt";

    fn frame(first_seq: u64, state: Option<&[u8]>, events: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            &SALT,
            FrameOut {
                first_seq,
                dropped: Some(7),
                state,
                changes: &[b"c1", b"", b"c3"],
            },
            events.iter().copied(),
        );
        buf
    }

    #[test]
    fn a_frame_round_trips() {
        let big = vec![0xa5u8; 300];
        let buf = frame(41, Some(b"state"), &[b"one", &big, b""]);
        let Parsed::Frame(f, len) = parse(&buf, &SALT) else {
            panic!("not a frame")
        };
        assert_eq!(len, buf.len());
        assert_eq!((f.first_seq, f.count, f.next_seq()), (41, 3, 44));
        assert_eq!((f.dropped, f.state), (Some(7), Some(&b"state"[..])));
        assert_eq!(f.changes().collect::<Vec<_>>(), [&b"c1"[..], b"", b"c3"]);
        let events: Vec<(u64, Vec<u8>)> = f.events().map(|(s, b)| (s, b.to_vec())).collect();
        assert_eq!(
            events,
            vec![(41, b"one".to_vec()), (42, big.clone()), (43, Vec::new())]
        );
    }

    #[test]
    fn every_cut_is_short_and_every_flip_is_bad() {
        let buf = frame(1, None, &[b"granted", b"door closed"]);
        for cut in 0..buf.len() {
            assert!(
                matches!(parse(&buf[..cut], &SALT), Parsed::Short(n) if n > cut),
                "cut at {cut}"
            );
        }
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut flipped = buf.clone();
                flipped[i] ^= 1 << bit;
                assert!(
                    !matches!(parse(&flipped, &SALT), Parsed::Frame(..)),
                    "flip of bit {bit} in byte {i} accepted"
                );
            }
        }
    }

    #[test]
    fn a_frame_does_not_check_under_another_segments_salt() {
        let buf = frame(7, None, &[b"user name as typed"]);
        assert!(matches!(parse(&buf, &SALT), Parsed::Frame(..)));
        assert!(matches!(
            parse(&buf, b"other!!!"),
            Parsed::Damaged(_, "frame checksum mismatch")
        ));
    }

    #[test]
    fn varints_round_trip_at_their_edges() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(get_varint(&buf), Some((v, buf.len())));
            assert_eq!(get_varint(&buf[..buf.len() - 1]), None);
        }
    }
}
