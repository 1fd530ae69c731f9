//! `[uplink]`: the broker and this gateway's identity on it.

use std::path::PathBuf;

use serde::Deserialize;

/// `[uplink]` (optional: without it the gateway runs offline, events stay
/// in the journal up to its budget).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// Broker host name or address; the broker's certificate must name it
    /// (subjectAltName).
    pub host: String,
    /// Broker TLS port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// CA that signed the broker's certificate (PEM).
    pub ca: PathBuf,
    /// This gateway's client certificate (PEM; its CN is the gateway id).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8 or SEC1).
    pub key: PathBuf,
    /// Topic prefix; default `portier/v1/<gateway-id>`.
    pub topic_prefix: Option<String>,
    /// Events per message.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Bytes per message, at most, KiB (default 256, at most 8192: well
    /// under every broker's and rumqttc's packet limits, also on a resend
    /// after an outage). A batch ends before the event that would pass
    /// it; one event alone is never larger than 4 KiB.
    #[serde(default = "default_batch_kib")]
    pub batch_kib: usize,
    /// Events sent and not yet acknowledged centrally, at most.
    #[serde(default = "default_window")]
    pub window: u64,
    /// Largest snapshot accepted, MiB (MQTT packet size limit; 1 M
    /// credentials are well under 100 MiB).
    #[serde(default = "default_max_snapshot")]
    pub max_snapshot_mib: usize,
    /// Largest delta accepted, KiB. A larger one is refused with an
    /// `uplink_message_refused` alarm, unapplied (the MQTT packet limit
    /// is connection-wide, so it is checked per topic after receipt).
    #[serde(default = "default_max_delta")]
    pub max_delta_kib: usize,
    /// Largest reader firmware file accepted on `<prefix>/firmware`, MiB
    /// (1..=64; a larger value is lowered to 64, the most an OSDP file
    /// transfer here takes).
    #[serde(default = "default_max_firmware")]
    pub max_firmware_mib: usize,
    /// Events sent but not acknowledged are sent again when central has
    /// acknowledged nothing new for this long, seconds.
    #[serde(default = "default_resend_after")]
    pub resend_after_seconds: u64,
    /// Status republished at least this often, seconds.
    #[serde(default = "default_status_interval")]
    pub status_interval_seconds: u64,
}

fn default_port() -> u16 {
    8883
}
fn default_batch() -> usize {
    500
}
fn default_batch_kib() -> usize {
    256
}
/// The largest `batch_kib` taken (a larger value is lowered to it).
pub const MAX_BATCH_KIB: usize = 8192;
fn default_window() -> u64 {
    20_000
}
fn default_max_snapshot() -> usize {
    256
}
fn default_max_delta() -> usize {
    1024
}
fn default_max_firmware() -> usize {
    16
}
fn default_resend_after() -> u64 {
    10
}
fn default_status_interval() -> u64 {
    60
}

impl UplinkConfig {
    /// Bytes per event message, at most: `batch_kib`, within 1..=8192 KiB.
    pub fn batch_bytes(&self) -> usize {
        self.batch_kib.clamp(1, MAX_BATCH_KIB) << 10
    }

    /// Bytes of a firmware file, at most: `max_firmware_mib` within 1..=64.
    pub fn max_firmware_bytes(&self) -> usize {
        self.max_firmware_mib.clamp(1, 64) << 20
    }

    /// The topic prefix for `gateway`.
    pub fn prefix(&self, gateway: &str) -> String {
        self.topic_prefix
            .clone()
            .unwrap_or_else(|| format!("portier/v1/{gateway}"))
    }
}
