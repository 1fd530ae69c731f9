//! Handles to a running gateway: what the admin backend, the CLI and the
//! tests hold on to once `portier run` has started (kept apart from the
//! assembly in [`super::gateway`], which hands them out).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::daemon::{Control, DaemonView};
use crate::journal::JournalReader;
use crate::osdp::PdStatus;
use crate::store::Store;

/// Handles to a running gateway.
#[derive(Debug)]
pub struct Running {
    /// Requests to the daemon loop.
    pub control: mpsc::Sender<Control>,
    /// Daemon state after every round.
    pub view: watch::Receiver<DaemonView>,
    /// PD statuses per bus.
    pub bus_status: HashMap<String, watch::Receiver<Vec<PdStatus>>>,
    /// The rules store.
    pub store: Arc<Store>,
    /// A read handle on the event journal.
    pub journal: Arc<JournalReader>,
    /// The admin port's address and certificate fingerprint, when it runs.
    pub admin: Option<(std::net::SocketAddr, String)>,
}
