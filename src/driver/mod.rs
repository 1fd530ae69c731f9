//! Thin async drivers: the only code that touches serial ports, sled, MQTT,
//! HTTP and the clock.

pub mod admin_backend;
pub mod clock;
pub mod daemon;
pub mod gateway;
pub mod logging;
pub mod serial;
pub mod service;
pub mod simulator;
pub mod uplink;
