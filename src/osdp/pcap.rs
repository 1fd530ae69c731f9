//! Bus capture in pcap format with link type 162 (USER15), the format
//! libosdp writes and Wireshark's OSDP dissector reads: one record per
//! packet as it crossed the wire. Pure encoding; the driver writes files.

use std::time::Duration;

/// pcap link type for OSDP captures.
pub const LINKTYPE_OSDP: u32 = 162;

/// The 24-byte pcap global header (microsecond timestamps, little-endian).
pub fn file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs stay 0.
    h[16..20].copy_from_slice(&65_535u32.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_OSDP.to_le_bytes());
    h
}

/// One record: `since_epoch` is the wall-clock time of the packet.
pub fn record(since_epoch: Duration, packet: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(16 + packet.len());
    // pcap's 32-bit seconds run out in 2106; saturate rather than wrap.
    let secs = u32::try_from(since_epoch.as_secs()).unwrap_or(u32::MAX);
    let len = u32::try_from(packet.len()).unwrap_or(u32::MAX);
    r.extend_from_slice(&secs.to_le_bytes());
    r.extend_from_slice(&since_epoch.subsec_micros().to_le_bytes());
    r.extend_from_slice(&len.to_le_bytes());
    r.extend_from_slice(&len.to_le_bytes());
    r.extend_from_slice(packet);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let h = file_header();
        assert_eq!(&h[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes([h[20], h[21], h[22], h[23]]), 162);
        let r = record(Duration::new(5, 7_000), &[1, 2, 3]);
        assert_eq!(&r[..4], &5u32.to_le_bytes());
        assert_eq!(&r[4..8], &7u32.to_le_bytes());
        assert_eq!(&r[8..12], &3u32.to_le_bytes());
        assert_eq!(&r[16..], &[1, 2, 3]);
    }
}
