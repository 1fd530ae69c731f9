//! The OSDP v2.2 stack, sans-IO: bytes and `now` in; bytes, events and the
//! next deadline out. No runtime, no clock reads, no randomness of its own.
//!
//! Layers, bottom up:
//! - [`frame`]: the wire frame (mark, SOM, address, length, control, security
//!   block, CRC-16 or checksum) and a resynchronising reader;
//! - [`message`]: typed commands and replies;
//! - [`secure`]: Secure Channel cryptography;
//! - [`channel`]: a frame plus Secure Channel state → authenticated message;
//! - [`pd`]: the CP's view of one PD (identity, capabilities, SC handshake, online/offline);
//! - [`bus`]: the multi-drop scheduler, one exchange in flight per bus;
//! - [`transfer`]: sending a file in fragments (osdp_FILETRANSFER / FTSTAT);
//! - [`peripheral`]: the PD side, used by the simulator;
//! - [`pcap`]: bus capture records.

pub mod bus;
pub mod channel;
pub mod frame;
pub mod message;
pub mod pd;
pub mod secure;
pub mod transfer;

pub use bus::{Bus, BusError, BusStats, Entropy, Transmit};
pub use pd::{
    BusEvent, CommandFailure, KeyPolicy, OfflineReason, PdConfig, PdStatus, RotationFailure,
    SecurityAlarm, Timing,
};
pub mod fuzz;
pub mod pcap;
pub mod peripheral;
