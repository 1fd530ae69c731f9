//! Portier: the access-control gateway of one building.
//!
//! Pure cores ([`osdp`], [`rules`], [`door`], [`site`]) take bytes, events
//! and `now` as input and return actions; they never read a clock or do I/O.
//! Thin async drivers ([`driver`]) own serial ports, sled, MQTT and HTTP;
//! [`event`] says what happened (sans-IO), [`journal`] keeps it durably. See `ARCHITECTURE.md` for the map
//! and the invariants.

pub mod action;
pub mod admin;
pub mod central;
pub mod clock;
pub mod command;
pub mod config;
pub mod door;
pub mod driver;
pub mod event;
pub mod ids;
pub mod journal;
pub mod mqtt;
pub mod osdp;
pub mod rules;
pub mod secret_files;
pub mod site;
pub mod status;
pub mod storage;
pub mod store;
pub mod text;
pub mod upkeep;
pub mod uplink;

#[cfg(test)]
mod test_clock;
