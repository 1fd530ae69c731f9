//! Entry points for the fuzz targets in `fuzz/` and for the corpus replay
//! test: arbitrary bytes into the decoders. A panic here is a bug, never bad
//! input.

use super::channel::{SecureSession, Side};
use super::frame::FrameReader;
use super::message::{Command, Reply};
use super::peripheral::{Peripheral, PeripheralConfig};
use super::secure::{Scbk, SessionKeys};

/// Frame reader and message decoders on arbitrary bytes.
pub fn frame(data: &[u8]) {
    let mut reader = FrameReader::new();
    // Feed in two pieces to exercise partial frames.
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    for chunk in [&data[..split], &data[split..]] {
        reader.push(chunk);
        while let Some(item) = reader.next_frame() {
            if let Ok(rx) = item {
                let _ = Command::decode(rx.frame.code, &rx.frame.data);
                let _ = Reply::decode(rx.frame.code, &rx.frame.data);
                let again = rx
                    .frame
                    .encode(rx.had_mark)
                    .expect("a parsed frame re-encodes");
                let mut check = FrameReader::new();
                check.push(&again);
                let back = check.next_frame().expect("complete").expect("valid");
                assert_eq!(back.frame, rx.frame, "encode/parse round trip");
            }
        }
    }
}

/// Secure Channel on arbitrary frames: the CP's session opening replies, and
/// a keyed PD handling commands (handshake included).
pub fn secure_channel(data: &[u8]) {
    let key = Scbk([0x11; 16]);
    let keys = SessionKeys::derive(&key, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let mut session = SecureSession::new(Side::ControlPanel, keys, [7; 16]);
    let mut reader = FrameReader::new();
    reader.push(data);
    while let Some(item) = reader.next_frame() {
        if let Ok(rx) = item {
            let _ = session.open(&rx);
        }
    }
    let mut pd = Peripheral::new(PeripheralConfig {
        address: 1,
        scbk: Some(key),
        install_mode: true,
        identity: super::message::PdIdentity {
            vendor: [0; 3],
            model: 0,
            version: 0,
            serial: 0,
            firmware: [0; 3],
        },
        capabilities: Vec::new(),
        inputs: 1,
        outputs: 1,
        files: super::peripheral::FileReceive::default(),
    });
    let mut n = 0u8;
    pd.handle_input(data, &mut |buf: &mut [u8]| {
        for b in buf {
            n = n.wrapping_add(1);
            *b = n;
        }
    });
    while pd.poll_transmit().is_some() {}
}
