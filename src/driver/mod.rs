//! Thin async drivers: the gateway's serial ports, sled, MQTT, HTTP and
//! the clock (read through `crate::clock`) are touched here; the journal,
//! the rules store and the admin port own their own files and sockets.

pub mod admin_backend;
/// The one clock read point (`crate::clock`), for the drivers' callers.
pub use crate::clock;
pub mod control_socket;
pub mod daemon;
pub mod decider;
pub mod disk;
pub mod drain;
pub mod gateway;
pub mod inbound;
pub mod inventory;
pub mod key_files;
pub mod logging;
pub mod running;
pub mod serial;
pub mod service;
pub mod simulator;
pub mod upkeep;
pub mod uplink;
