//! The rules store as the gateway core sees it: [`StoreDecider`] answers
//! the core's lookups (what the rules say of a credential at a door, the
//! scheduled door mode, office hours, a holder's name) from the signed
//! rules in force. Lookups only: the decision itself is the core's
//! (`site::decision`).

use std::sync::Arc;

use jiff::Timestamp;

use crate::ids::DoorId;
use crate::rules::areas::Area;
use crate::rules::{CredentialKey, DenyReason, Request};
use crate::site::{Rules, Verdict};
use crate::store::{Store, StoreError};

/// The rules store as the gateway core's [`Rules`]. Shared so that an apply
/// (from the uplink, the admin page or the control socket) runs beside
/// decisions: the store swaps generations atomically, so decisions never
/// wait for an apply.
pub struct StoreDecider {
    store: Arc<Store>,
    office_hours_schedule: String,
}

impl StoreDecider {
    /// A decider over `store`; `office_hours_schedule` names the rules'
    /// schedule that means office hours.
    pub fn new(store: Arc<Store>, office_hours_schedule: String) -> Self {
        Self {
            store,
            office_hours_schedule,
        }
    }
}

impl Rules for StoreDecider {
    fn decide(
        &self,
        door: &DoorId,
        key: &CredentialKey,
        pin: Option<&str>,
        at: Timestamp,
    ) -> Verdict {
        let deny = |reason| Verdict::Deny {
            credential: Some(key.clone()),
            reason,
        };
        match self.store.decide(&Request::for_key(door, key, pin), at) {
            Ok(decision) => Verdict::of_rules(key, decision),
            // No rules at all: as old as rules can be.
            Err(StoreError::Empty) => deny(DenyReason::RulesTooOld),
            Err(e) => {
                tracing::error!(%door, error = %e, "rules lookup failed; denying");
                deny(DenyReason::UnknownCredential)
            }
        }
    }

    fn door_mode(&self, door: &DoorId, now: Timestamp) -> Option<String> {
        let header = self.store.header()?;
        header.door_mode(door, now).map(str::to_owned)
    }

    fn first_person_in_day(&self, door: &DoorId, now: Timestamp) -> Option<jiff::civil::Date> {
        self.store.header()?.first_person_in_day(door, now)
    }

    fn office_hours(&self, now: Timestamp) -> Option<bool> {
        self.store
            .header()
            .map(|h| h.schedule_open(&self.office_hours_schedule, now))
    }

    fn display_name(&self, key: &CredentialKey) -> Option<String> {
        self.store.credential(key).ok().flatten()?.display_name
    }

    fn knows(&self, key: &CredentialKey) -> Option<bool> {
        self.store.header()?;
        self.store.credential(key).ok().map(|c| c.is_some())
    }

    fn area(&self, name: &str) -> Option<Area> {
        self.store.header()?.areas().area(name).cloned()
    }

    fn antipassback_exempt(&self, key: &CredentialKey) -> bool {
        self.store
            .header()
            .is_some_and(|h| h.areas().is_exempt(key))
    }

    fn last_forgiveness(&self, at: Timestamp) -> Option<Timestamp> {
        self.store.header()?.last_forgiveness(at)
    }

    fn duress(&self, key: &CredentialKey, pin: &str) -> bool {
        let (Some(header), Ok(Some(c))) = (self.store.header(), self.store.credential(key)) else {
            return false;
        };
        c.pin.is_some_and(|own| header.is_duress(&own, pin))
    }
}
