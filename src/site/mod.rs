//! The building, sans-IO: [`Gateway`] is the core the daemon drives (doors,
//! standing modes, remote actions, presence, trusted time, decisions, and
//! the standing state that survives a restart); [`Building`] wires the
//! door machines to PDs; `outputs` says what is sent to a PD.

pub mod areas;
#[cfg(test)]
mod areas_gateway_tests;
pub mod building;
pub mod clock;
pub mod decision;
pub mod gateway;
pub mod interlock;
pub mod modes;
pub mod outputs;
pub mod pin_entry;
pub mod remote;
pub mod standing;

pub use building::{
    Building, BuildingAction, BuildingInput, DoorKind, DoorState, DoorWiring, FireAlarmWiring,
    InputRef, InputRole, OutputRef, PdRef, ReaderRef,
};
pub use decision::{Presented, Rules, Situation, Verdict, When};
pub use gateway::{
    Boot, Commit, DecisionObserver, Gateway, Input, Now, Output, StandingChange, Ticket,
};
pub use standing::StandingState;
