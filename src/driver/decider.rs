//! The rules store as the gateway core sees it: [`StoreDecider`] answers
//! the core's lookups (decide a card, the scheduled door mode, office
//! hours, a granted person's name) from the signed rules in force.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;

use crate::door::DenyReason;
use crate::ids::DoorId;
use crate::osdp::message::RawCard;
use crate::rules::{Card, Decision, Request};
use crate::site::{Rules, Verdict};
use crate::store::{Store, StoreError};

/// The rules store as the gateway core's [`Rules`]. Shared so that an apply
/// (from the uplink, the admin page or the control socket) runs beside
/// decisions: the store swaps generations atomically, so decisions never
/// wait for an apply.
pub struct StoreDecider {
    store: Arc<Store>,
    office_hours_schedule: String,
    /// Display names of recent grants, for the presence list.
    names: HashMap<String, Option<String>>,
}

/// How many recent grant names are kept for presence.
const NAME_CACHE: usize = 4096;

impl StoreDecider {
    /// A decider over `store`; `office_hours_schedule` names the rules'
    /// schedule that means office hours.
    pub fn new(store: Arc<Store>, office_hours_schedule: String) -> Self {
        Self {
            store,
            office_hours_schedule,
            names: HashMap::new(),
        }
    }
}

impl Rules for StoreDecider {
    fn decide(&mut self, door: &DoorId, card: &RawCard, now: Timestamp) -> Verdict {
        let req = Request {
            door: door.to_string(),
            card: Card::Raw {
                bytes: card.data.clone(),
                bits: card.bits,
            },
            pin: None,
            lockdown: false,
        };
        let credential = crate::rules::wiegand::decode(&card.data, card.bits)
            .ok()
            .map(|k| k.to_string());
        match self.store.decide(&req, now) {
            Ok(Decision::Grant {
                credential,
                extended_unlock,
                lockdown_exempt,
                display_name,
                ..
            }) => {
                let credential = credential.to_string();
                if self.names.len() >= NAME_CACHE {
                    self.names.clear();
                }
                self.names.insert(credential.clone(), display_name);
                Verdict::Grant {
                    credential,
                    extended: extended_unlock,
                    lockdown_exempt,
                }
            }
            Ok(Decision::Deny(reason)) => Verdict::Deny { credential, reason },
            // No rules at all: as old as rules can be.
            Err(StoreError::Empty) => Verdict::Deny {
                credential,
                reason: DenyReason::RulesTooOld,
            },
            Err(e) => {
                tracing::error!(%door, error = %e, "rules lookup failed; denying");
                Verdict::Deny {
                    credential,
                    reason: DenyReason::UnknownCredential,
                }
            }
        }
    }

    fn door_mode(&self, door: &DoorId, now: Timestamp) -> Option<String> {
        let header = self.store.header()?;
        header.door_mode(door, now).map(str::to_owned)
    }

    fn office_hours(&self, now: Timestamp) -> Option<bool> {
        self.store
            .header()
            .map(|h| h.schedule_open(&self.office_hours_schedule, now))
    }

    fn display_name(&self, credential: &str) -> Option<String> {
        self.names.get(credential).cloned().flatten()
    }
}
