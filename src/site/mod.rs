//! The building's wiring, sans-IO: how the door cores' actions become OSDP
//! commands on a PD (strike relay, reader LED and buzzer). The daemon owns
//! the mapping of doors to buses and PDs; this module owns what is sent.

pub mod building;
pub mod modes;
pub mod outputs;
pub mod remote;
pub mod trusted_time;

pub use building::{
    Building, BuildingAction, BuildingInput, DoorKind, DoorState, DoorWiring, InputRef, OutputRef,
    PdRef, ReaderRef, Verdict,
};
