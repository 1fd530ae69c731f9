//! The link to the central system, sans-IO parts: what to send next from
//! the journal ([`outbox`]), the wire payloads ([`wire`]) and the uplink
//! configuration with its TLS client config ([`tls`]). The MQTT driver is `crate::driver::uplink`.

pub mod config;
pub mod fuzz;
pub mod outbox;
pub mod tls;
pub mod wire;

pub use config::UplinkConfig;
pub use outbox::Outbox;
