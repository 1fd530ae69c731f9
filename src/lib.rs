//! Portier: the access-control gateway of one building.
//!
//! Pure cores ([`osdp`], [`rules`]) take bytes, events and `now` as input and
//! return actions; thin async drivers ([`driver`]) own serial ports, sled, MQTT
//! and HTTP. See `ARCHITECTURE.md` for the map and the invariants.

pub mod config;
pub mod door;
pub mod driver;
pub mod osdp;
pub mod rules;
pub mod store;
