//! The link to the central system, sans-IO parts: what to send next from
//! the journal ([`outbox`]), the wire payloads ([`wire`]) and the uplink
//! configuration. The MQTT driver is `crate::driver::uplink`.

pub mod config;
pub mod outbox;
pub mod wire;

pub use config::UplinkConfig;
pub use outbox::Outbox;
