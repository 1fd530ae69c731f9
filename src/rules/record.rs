//! Compact binary credential records: the credential section of a signed
//! snapshot, and the pages and overlay values of the sled store, are the
//! same bytes.
//!
//! Why: decoding a million CBOR maps with RFC 3339 strings into structs cost
//! seconds and gigabytes. Records are checked in place (no allocation per
//! credential) and the store writes runs of them to sled as they are.
//!
//! Layout (integers big-endian):
//!
//! ```text
//! record = key_len:u16 key body_len:u16 body
//! key    = tag:u8 a:u32 b:u64      tag 1 h10301, 2 corporate1000, 3 h10304
//!        | 4 bits:u16 bytes         raw, ceil(bits/8) bytes, unused bits zero
//! body   = flags:u8 blocked:u8 [from] [until] n:u16 n×level:u16 [name] [pin]
//!   flags: 1 extended_unlock, 2 lockdown_exempt, 4 from, 8 until, 16 name, 32 pin
//!   blocked: 0 no, 1 lost, 2 stolen, 3 penalty
//!   from, until = seconds:i64 nanoseconds:u32; name = len:u16 UTF-8;
//!   pin = len:u16 salt len:u16 sha256-hex; level = index into the sorted
//!   access level names of the snapshot header.
//! ```
//!
//! Keys compare as bytes; a snapshot's records are strictly increasing,
//! which also rules out duplicates.

use jiff::Timestamp;

use super::{BlockReason, Credential, CredentialKey, PinHash, RulesError, wiegand};

const F_EXTENDED: u8 = 1;
const F_EXEMPT: u8 = 2;
const F_FROM: u8 = 4;
const F_UNTIL: u8 = 8;
const F_NAME: u8 = 16;
const F_PIN: u8 = 32;
const F_ALL: u8 = 63;

fn bad(what: impl std::fmt::Display) -> RulesError {
    RulesError::Syntax(format!("bad credential record: {what}"))
}

/// Append the byte form of a credential key (the sled key).
pub fn encode_key(key: &CredentialKey, out: &mut Vec<u8>) -> Result<(), RulesError> {
    let (tag, a, b) = match key {
        CredentialKey::H10301 { facility, number } => (1, *facility, *number),
        CredentialKey::Corporate1000 { company, number } => (2, *company, *number),
        CredentialKey::H10304 { facility, number } => (3, *facility, *number),
        CredentialKey::Raw { data } => {
            let (mut bytes, bits) = wiegand::parse_raw(data)
                .ok()
                .filter(|(b, bits)| *bits > 0 && b.len() == usize::from(*bits).div_ceil(8))
                .ok_or_else(|| bad(format_args!("raw key {data:?}")))?;
            mask_tail(&mut bytes, bits);
            out.push(4);
            out.extend_from_slice(&bits.to_be_bytes());
            out.extend_from_slice(&bytes);
            return Ok(());
        }
    };
    out.push(tag);
    out.extend_from_slice(&a.to_be_bytes());
    out.extend_from_slice(&b.to_be_bytes());
    Ok(())
}

/// The byte form of a credential key.
pub fn key_bytes(key: &CredentialKey) -> Result<Vec<u8>, RulesError> {
    let mut v = Vec::with_capacity(13);
    encode_key(key, &mut v)?;
    Ok(v)
}

fn mask_tail(bytes: &mut [u8], bits: u16) {
    let rem = usize::from(bits) % 8;
    if rem != 0
        && let Some(last) = bytes.last_mut()
    {
        *last &= 0xffu8 << (8 - rem);
    }
}

/// Parse the byte form of a key (checked: canonical raw bits only).
pub fn decode_key(bytes: &[u8]) -> Result<CredentialKey, RulesError> {
    let mut c = Cursor(bytes);
    let key = match c.u8()? {
        tag @ 1..=3 => {
            let (a, b) = (c.u32()?, c.u64()?);
            match tag {
                1 => CredentialKey::H10301 {
                    facility: a,
                    number: b,
                },
                2 => CredentialKey::Corporate1000 {
                    company: a,
                    number: b,
                },
                _ => CredentialKey::H10304 {
                    facility: a,
                    number: b,
                },
            }
        }
        4 => {
            let bits = c.u16()?;
            let data = c.take(usize::from(bits).div_ceil(8))?;
            let mut canon = data.to_vec();
            mask_tail(&mut canon, bits);
            if bits == 0 || canon != data {
                return Err(bad("raw key not canonical"));
            }
            CredentialKey::Raw {
                data: wiegand::raw_text(data, bits),
            }
        }
        t => return Err(bad(format_args!("key tag {t}"))),
    };
    c.end()?;
    Ok(key)
}

/// Append one record for `c`; `levels` are the header's sorted access
/// level names (an unknown level is a dangling reference).
pub fn encode(c: &Credential, levels: &[String], out: &mut Vec<u8>) -> Result<(), RulesError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    encode_key(&c.key, out)?;
    let key_len = out.len() - start - 2;
    let body_at = out.len();
    out.extend_from_slice(&[0, 0]);
    let mut flags = 0;
    for (on, f) in [
        (c.extended_unlock, F_EXTENDED),
        (c.lockdown_exempt, F_EXEMPT),
        (c.valid_from.is_some(), F_FROM),
        (c.valid_until.is_some(), F_UNTIL),
        (c.display_name.is_some(), F_NAME),
        (c.pin.is_some(), F_PIN),
    ] {
        if on {
            flags |= f;
        }
    }
    out.push(flags);
    out.push(block_byte(c.blocked));
    for t in [c.valid_from, c.valid_until].into_iter().flatten() {
        // Floor seconds and a non-negative nanosecond offset, so instants
        // before 1970 encode the same way as later ones.
        let total = t.as_nanosecond();
        let secs = i64::try_from(total.div_euclid(1_000_000_000)).map_err(|_| bad("timestamp"))?;
        let ns = u32::try_from(total.rem_euclid(1_000_000_000)).map_err(|_| bad("timestamp"))?;
        out.extend_from_slice(&secs.to_be_bytes());
        out.extend_from_slice(&ns.to_be_bytes());
    }
    put_len(out, c.access_levels.len())?;
    for l in &c.access_levels {
        let i = levels.binary_search(l).map_err(|_| {
            RulesError::Reference(format!("credential {}: unknown access level {l:?}", c.key))
        })?;
        put_len(out, i)?;
    }
    if let Some(n) = &c.display_name {
        put_str(out, n)?;
    }
    if let Some(p) = &c.pin {
        put_str(out, &p.salt)?;
        put_str(out, &p.sha256)?;
    }
    let body_len = out.len() - body_at - 2;
    for (at, len) in [(start, key_len), (body_at, body_len)] {
        let len = u16::try_from(len).map_err(|_| bad("record longer than 64 KiB"))?;
        out[at..at + 2].copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

fn block_byte(b: Option<BlockReason>) -> u8 {
    match b {
        None => 0,
        Some(BlockReason::Lost) => 1,
        Some(BlockReason::Stolen) => 2,
        Some(BlockReason::Penalty) => 3,
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) -> Result<(), RulesError> {
    let n = u16::try_from(n).map_err(|_| bad("list or text longer than 65535"))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), RulesError> {
    put_len(out, s.len())?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RulesError> {
        if self.0.len() < n {
            return Err(bad("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RulesError> {
        // `take(N)` returned exactly N bytes.
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Result<u8, RulesError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, RulesError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, RulesError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, RulesError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn str(&mut self) -> Result<&'a str, RulesError> {
        let n = usize::from(self.u16()?);
        std::str::from_utf8(self.take(n)?).map_err(|_| bad("text is not UTF-8"))
    }
    fn time(&mut self) -> Result<Timestamp, RulesError> {
        let s = i64::from_be_bytes(self.array()?);
        let ns = self.u32()?;
        if ns >= 1_000_000_000 {
            return Err(bad("nanoseconds"));
        }
        Timestamp::from_nanosecond(i128::from(s) * 1_000_000_000 + i128::from(ns))
            .map_err(|_| bad("timestamp out of range"))
    }
    fn end(&self) -> Result<(), RulesError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(bad("trailing bytes"))
        }
    }
}

/// One record, borrowed from a snapshot or a store page.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    whole: &'a [u8],
    key: &'a [u8],
    body: &'a [u8],
}

/// A record body parsed in place.
struct Body<'a> {
    flags: u8,
    blocked: Option<BlockReason>,
    from: Option<Timestamp>,
    until: Option<Timestamp>,
    levels: &'a [u8],
    name: Option<&'a str>,
    pin: Option<(&'a str, &'a str)>,
}

impl<'a> Record<'a> {
    /// Split one record off the front of `bytes`.
    fn split(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), RulesError> {
        let mut c = Cursor(bytes);
        let kl = usize::from(c.u16()?);
        let key = c.take(kl)?;
        let bl = usize::from(c.u16()?);
        let body = c.take(bl)?;
        let used = 4 + kl + bl;
        Ok((
            Self {
                whole: &bytes[..used],
                key,
                body,
            },
            c.0,
        ))
    }

    /// Parse exactly one record.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, RulesError> {
        let (r, rest) = Self::split(bytes)?;
        Cursor(rest).end()?;
        Ok(r)
    }

    /// The key bytes (see [`encode_key`]).
    pub fn key(&self) -> &'a [u8] {
        self.key
    }

    /// The whole record as stored.
    pub fn bytes(&self) -> &'a [u8] {
        self.whole
    }

    fn body(&self) -> Result<Body<'a>, RulesError> {
        let mut c = Cursor(self.body);
        let flags = c.u8()?;
        if flags & !F_ALL != 0 {
            return Err(bad("unknown flags"));
        }
        let blocked = match c.u8()? {
            0 => None,
            1 => Some(BlockReason::Lost),
            2 => Some(BlockReason::Stolen),
            3 => Some(BlockReason::Penalty),
            b => return Err(bad(format_args!("block reason {b}"))),
        };
        let from = (flags & F_FROM != 0).then(|| c.time()).transpose()?;
        let until = (flags & F_UNTIL != 0).then(|| c.time()).transpose()?;
        let n = usize::from(c.u16()?);
        let levels = c.take(2 * n)?;
        let name = (flags & F_NAME != 0).then(|| c.str()).transpose()?;
        let pin = (flags & F_PIN != 0)
            .then(|| Ok::<_, RulesError>((c.str()?, c.str()?)))
            .transpose()?;
        c.end()?;
        Ok(Body {
            flags,
            blocked,
            from,
            until,
            levels,
            name,
            pin,
        })
    }

    /// Check the record without allocating: key shape, body shape, and every
    /// level index below `levels`.
    pub fn check(&self, levels: usize) -> Result<(), RulesError> {
        let mut c = Cursor(self.key);
        match c.u8()? {
            1..=3 => {
                c.take(12)?;
                c.end()?;
            }
            // Rare: raw keys are checked by decoding them.
            _ => {
                decode_key(self.key)?;
            }
        }
        let b = self.body()?;
        for l in b.levels.chunks_exact(2) {
            if usize::from(u16::from_be_bytes([l[0], l[1]])) >= levels {
                return Err(RulesError::Reference(
                    "credential record: unknown access level".into(),
                ));
            }
        }
        Ok(())
    }

    /// Decode into a [`Credential`], naming levels from `levels`.
    pub fn decode(&self, levels: &[String]) -> Result<Credential, RulesError> {
        let b = self.body()?;
        let access_levels = b
            .levels
            .chunks_exact(2)
            .map(|l| {
                levels
                    .get(usize::from(u16::from_be_bytes([l[0], l[1]])))
                    .cloned()
                    .ok_or_else(|| bad("unknown access level"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Credential {
            key: decode_key(self.key)?,
            display_name: b.name.map(str::to_owned),
            access_levels,
            valid_from: b.from,
            valid_until: b.until,
            blocked: b.blocked,
            pin: b.pin.map(|(salt, sha)| PinHash {
                salt: salt.to_owned(),
                sha256: sha.to_owned(),
            }),
            extended_unlock: b.flags & F_EXTENDED != 0,
            lockdown_exempt: b.flags & F_EXEMPT != 0,
        })
    }

    /// A copy of the record with another block state (delta blocks and
    /// unblocks rewrite one byte, without decoding the credential).
    pub fn with_blocked(&self, reason: Option<BlockReason>) -> Result<Vec<u8>, RulesError> {
        self.body()?;
        let mut v = self.whole.to_vec();
        // Body offset: key_len field, key, body_len field; byte 1 of the body.
        v[2 + self.key.len() + 2 + 1] = block_byte(reason);
        Ok(v)
    }
}

/// Iterator over the records of a section (stops at the first error).
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    /// Iterate the records in `section`.
    pub fn new(section: &'a [u8]) -> Self {
        Self { rest: section }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, RulesError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match Record::split(self.rest) {
            Ok((r, rest)) => {
                self.rest = rest;
                Some(Ok(r))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// Check a whole section: every record well-formed, keys strictly
/// increasing (sorted, no duplicates), level indices below `levels`.
/// Returns the number of records.
pub fn check_section(section: &[u8], levels: usize) -> Result<u64, RulesError> {
    let mut prev: Option<&[u8]> = None;
    let mut n = 0;
    for r in Records::new(section) {
        let r = r?;
        r.check(levels)?;
        if prev.is_some_and(|p| p >= r.key) {
            let key = decode_key(r.key).map_or_else(|_| "?".into(), |k| k.to_string());
            return Err(RulesError::Reference(format!(
                "credential {key} out of order or listed twice"
            )));
        }
        prev = Some(r.key);
        n += 1;
    }
    Ok(n)
}

/// Find `key` in a checked, sorted section (linear, stops early; a store
/// page holds a few dozen records).
pub fn find<'a>(section: &'a [u8], key: &[u8]) -> Result<Option<Record<'a>>, RulesError> {
    for r in Records::new(section) {
        let r = r?;
        match r.key.cmp(key) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return Ok(Some(r)),
            std::cmp::Ordering::Greater => return Ok(None),
        }
    }
    Ok(None)
}

/// Cut a checked section into runs of whole records of about `target`
/// bytes; yields (last key of the run, run).
pub fn pages(section: &[u8], target: usize) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = section;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut used = 0;
        let mut last: &[u8] = &[];
        while used < target && used < rest.len() {
            match Record::split(&rest[used..]) {
                Ok((r, _)) => {
                    used += r.whole.len();
                    last = r.key;
                }
                // Unreachable for a checked section; end the pages.
                Err(_) => {
                    rest = &[];
                    return None;
                }
            }
        }
        let (page, tail) = rest.split_at(used);
        rest = tail;
        Some((last, page))
    })
}

/// Encode credentials as a section: sorted by key bytes, duplicates refused.
pub fn encode_section(creds: &[Credential], levels: &[String]) -> Result<Vec<u8>, RulesError> {
    let mut keyed = creds
        .iter()
        .map(|c| Ok((key_bytes(&c.key)?, c)))
        .collect::<Result<Vec<_>, RulesError>>()?;
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = keyed.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(RulesError::Reference(format!(
            "credential {} listed twice",
            w[0].1.key
        )));
    }
    let mut out = Vec::with_capacity(creds.len() * 40);
    for (_, c) in keyed {
        encode(c, levels, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    fn full() -> Credential {
        Credential {
            key: CredentialKey::Raw {
                data: "9501f4c0/26".into(),
            },
            display_name: Some("Zoë".into()),
            access_levels: vec!["c".into(), "a".into()],
            valid_from: Some("1969-12-31T23:59:59.5Z".parse().unwrap()),
            valid_until: Some("2029-08-31T23:59:59.123456789Z".parse().unwrap()),
            blocked: Some(BlockReason::Stolen),
            pin: Some(PinHash::new("s", "1234")),
            extended_unlock: true,
            lockdown_exempt: true,
        }
    }

    #[test]
    fn round_trip_every_field() {
        let mut out = Vec::new();
        encode(&full(), &levels(), &mut out).unwrap();
        let r = Record::parse(&out).unwrap();
        r.check(3).unwrap();
        let mut want = full();
        // Raw keys are canonical after encoding: unused bits zeroed.
        want.key = CredentialKey::Raw {
            data: "9501f4c0/26".into(),
        };
        assert_eq!(r.decode(&levels()).unwrap(), want);
        let plain = Credential {
            key: CredentialKey::H10304 {
                facility: 7,
                number: 9,
            },
            display_name: None,
            access_levels: vec![],
            valid_from: None,
            valid_until: None,
            blocked: None,
            pin: None,
            extended_unlock: false,
            lockdown_exempt: false,
        };
        let mut out = Vec::new();
        encode(&plain, &levels(), &mut out).unwrap();
        assert_eq!(out.len(), 2 + 13 + 2 + 4);
        assert_eq!(
            Record::parse(&out).unwrap().decode(&levels()).unwrap(),
            plain
        );
    }

    #[test]
    fn refuses_bad_input() {
        let mut c = full();
        c.access_levels.push("zzz".into());
        assert!(matches!(
            encode(&c, &levels(), &mut Vec::new()),
            Err(RulesError::Reference(_))
        ));
        let mut out = Vec::new();
        encode(&full(), &levels(), &mut out).unwrap();
        assert!(
            Record::parse(&out).unwrap().check(1).is_err(),
            "level 2 of 1"
        );
        for cut in 0..out.len() {
            assert!(Record::parse(&out[..cut]).is_err(), "cut at {cut}");
        }
        let mut flags = out.clone();
        flags[2 + 7 + 2] |= 0x80;
        assert!(Record::parse(&flags).unwrap().check(3).is_err());
        let mut blocked = out.clone();
        blocked[2 + 7 + 2 + 1] = 9;
        assert!(Record::parse(&blocked).unwrap().check(3).is_err());
        let mut raw = out.clone();
        raw[2 + 7 - 1] |= 1; // an unused bit of the 26-bit raw key
        assert!(Record::parse(&raw).unwrap().check(3).is_err());
    }

    #[test]
    fn section_sorted_unique_and_found() {
        let mk = |n| Credential {
            key: CredentialKey::H10301 {
                facility: 42,
                number: n,
            },
            ..full()
        };
        let creds: Vec<_> = [5, 1, 300, 2].into_iter().map(mk).collect();
        let s = encode_section(&creds, &levels()).unwrap();
        assert_eq!(check_section(&s, 3).unwrap(), 4);
        let k = key_bytes(&mk(300).key).unwrap();
        assert_eq!(find(&s, &k).unwrap().unwrap().key(), &k[..]);
        assert!(find(&s, &key_bytes(&mk(3).key).unwrap()).unwrap().is_none());
        let pages: Vec<_> = pages(&s, 1).collect();
        assert_eq!(pages.len(), 4);
        assert_eq!(pages[3].0, &k[..]);
        assert_eq!(pages.iter().map(|p| p.1.len()).sum::<usize>(), s.len());
        // Out of order or duplicated: refused.
        let r: Vec<_> = Records::new(&s).map(|r| r.unwrap().bytes()).collect();
        let swapped = [r[1], r[0]].concat();
        assert!(check_section(&swapped, 3).is_err());
        let twice = [r[0], r[0]].concat();
        assert!(check_section(&twice, 3).is_err());
        assert!(encode_section(&[mk(1), mk(1)], &levels()).is_err());
        // Blocking rewrites the block byte only.
        let rec = find(&s, &k).unwrap().unwrap();
        let un = rec.with_blocked(None).unwrap();
        let c = Record::parse(&un).unwrap().decode(&levels()).unwrap();
        assert_eq!(c.blocked, None);
        assert_eq!(c.display_name.as_deref(), Some("Zoë"));
    }
}
