//! The reader inventory: each PD's identity (PDID) and capabilities
//! (PDCAP), read by the bus at every bring-up, turned into the plain data
//! the status page, `/api/v1/status`, `portier status` and the MQTT
//! `status` message carry (`readers`, stored centrally in the `readers`
//! table).
//!
//! The MQTT inventory changes only when something a fleet query cares
//! about changes (identity, capabilities, online, Secure Channel, update):
//! a poll reply every few milliseconds must not republish the status.

use std::time::Instant;

use jiff::Timestamp;
use tokio::sync::watch;

use super::admin_backend::BusView;
use crate::osdp;
use crate::status::{CapabilityStatus, PdIdentity, PdStatus, ReaderInventory, UpdateProgress};

/// The wall-clock time of a monotonic instant in the past.
fn wall_time(at: Instant, mono_now: Instant, wall_now: Timestamp) -> Option<Timestamp> {
    let ago = jiff::SignedDuration::try_from(mono_now.saturating_duration_since(at)).ok()?;
    wall_now.checked_sub(ago).ok()
}

/// A PD's identity as the status shows it.
pub(crate) fn identity(i: &osdp::message::PdIdentity) -> PdIdentity {
    PdIdentity {
        vendor: hex::encode(i.vendor),
        model: i.model,
        version: i.version,
        serial: i.serial,
        firmware: format!("{}.{}.{}", i.firmware[0], i.firmware[1], i.firmware[2]),
    }
}

fn capabilities(p: &osdp::PdStatus) -> Vec<CapabilityStatus> {
    p.capabilities
        .iter()
        .map(|c| CapabilityStatus::new(c.function, c.compliance, c.count))
        .collect()
}

/// One PD as the status page shows it.
pub(crate) fn pd_status(
    p: &osdp::PdStatus,
    role: String,
    mono_now: Instant,
    wall_now: Timestamp,
) -> PdStatus {
    PdStatus {
        address: p.address,
        role,
        online: p.online,
        secure_channel: p.secure,
        last_reply_age_ms: p
            .last_reply
            .map(|t| mono_now.saturating_duration_since(t).as_millis() as u64),
        offline_reason: match (p.online, p.transfer) {
            (_, Some(_)) => Some("firmware update".to_owned()),
            (false, None) => Some("no reply".to_owned()),
            (true, None) => None,
        },
        tamper: p.local_status.is_some_and(|s| s.tamper != 0),
        power_failure: p.local_status.is_some_and(|s| s.power != 0),
        identity: p.identity.as_ref().map(identity),
        capabilities: capabilities(p),
        last_seen: p.last_reply.and_then(|t| wall_time(t, mono_now, wall_now)),
        update: p.transfer.map(|t| UpdateProgress {
            confirmed: t.confirmed,
            total: t.total,
        }),
    }
}

/// Every PD of every bus, for the fleet inventory.
pub(crate) fn inventory(
    buses: &[BusView],
    mono_now: Instant,
    wall_now: Timestamp,
) -> Vec<ReaderInventory> {
    buses
        .iter()
        .flat_map(|b| {
            b.status
                .borrow()
                .iter()
                .map(|p| ReaderInventory {
                    bus: b.name.clone(),
                    address: p.address,
                    name: b.roles.get(&p.address).cloned().unwrap_or_default(),
                    identity: p.identity.as_ref().map(identity),
                    capabilities: capabilities(p),
                    online: p.online && p.transfer.is_none(),
                    secure_channel: p.secure,
                    last_seen: p.last_reply.and_then(|t| wall_time(t, mono_now, wall_now)),
                    updating: p.transfer.is_some(),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether two inventories differ in more than when the readers last
/// answered.
fn differs(a: &[ReaderInventory], b: &[ReaderInventory]) -> bool {
    let strip = |r: &ReaderInventory| ReaderInventory {
        last_seen: None,
        ..r.clone()
    };
    a.len() != b.len() || a.iter().zip(b).any(|(x, y)| strip(x) != strip(y))
}

/// The inventory, updated when it changes in substance (see the module
/// docs). Ends with the buses.
pub(crate) fn watch_inventory(buses: Vec<BusView>) -> watch::Receiver<Vec<ReaderInventory>> {
    let now = || (super::clock::monotonic(), super::daemon::wall_now());
    let (mono, wall) = now();
    let (tx, rx) = watch::channel(inventory(&buses, mono, wall));
    let (changed_tx, mut changed) = tokio::sync::mpsc::channel::<()>(1);
    for bus in &buses {
        let mut status = bus.status.clone();
        let changed_tx = changed_tx.clone();
        tokio::spawn(async move {
            while status.changed().await.is_ok() {
                status.borrow_and_update();
                // A full channel already carries a wake-up.
                let _ = changed_tx.try_send(());
            }
        });
    }
    drop(changed_tx);
    tokio::spawn(async move {
        while changed.recv().await.is_some() {
            let (mono, wall) = now();
            let next = inventory(&buses, mono, wall);
            tx.send_if_modified(|current| {
                let news = differs(current, &next);
                if news {
                    *current = next;
                }
                news
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}
