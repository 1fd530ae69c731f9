//! The MQTT client setup both ends of the contract share: the gateway's
//! uplink (`driver::uplink`) and `portier central` build their rumqttc
//! options here (mTLS with the ring provider, keep-alive, packet limits),
//! and the integrator tools publish through [`drive_until`].
//!
//! Neutral ground: this module imports no driver and no central code, so
//! neither side reaches into the other.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{Event, EventLoop, LastWill, MqttOptions, TlsConfiguration, Transport};
use thiserror::Error;

use crate::uplink::UplinkConfig;

/// An MQTT client could not be set up or did not get its confirmation.
#[derive(Debug, Error)]
pub enum MqttError {
    /// A certificate, key or CA file is unusable.
    #[error("uplink TLS: {0}")]
    Tls(String),
    /// The connection failed while waiting for a confirmation (boxed:
    /// rumqttc's error is large, and this one travels in every `Result`).
    #[error("{0}")]
    Connection(Box<rumqttc::ConnectionError>),
    /// No confirmation within the limit.
    #[error("no confirmation within {0:?}")]
    Timeout(Duration),
}

/// MQTT options for a client with id `client_id` (the gateway id, a
/// central instance, or a one-off id for the integrator tools): mTLS from
/// `cfg`, 30 s keep-alive, a persistent session (callers change it), the
/// incoming limit the larger of `max_snapshot_mib` and a firmware file,
/// outgoing 16 MiB or a firmware file (central sends those).
pub fn mqtt_options(
    cfg: &UplinkConfig,
    client_id: &str,
    last_will: Option<LastWill>,
) -> Result<MqttOptions, MqttError> {
    let tls = crate::uplink::tls::client_config(cfg).map_err(|e| MqttError::Tls(e.to_string()))?;
    let mut o = MqttOptions::new(client_id, &cfg.host, cfg.port);
    o.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls))));
    o.set_keep_alive(Duration::from_secs(30));
    // A persistent session: commands published while the link is down are
    // queued by the broker and delivered (then checked for expiry).
    o.set_clean_session(false);
    // A firmware message is the file and a command id in CBOR.
    let firmware = cfg.max_firmware_bytes() + (64 << 10);
    o.set_max_packet_size(
        (cfg.max_snapshot_mib << 20).max(firmware),
        (16 << 20).max(firmware),
    );
    o.set_request_channel_capacity(256);
    if let Some(will) = last_will {
        o.set_last_will(will);
    }
    Ok(o)
}

/// Read the whole event loop until `what` holds or `limit` passes; for the
/// integrator tools, which publish and leave.
pub async fn drive_until(
    eventloop: &mut EventLoop,
    limit: Duration,
    mut what: impl FnMut(&Event) -> bool,
) -> Result<(), MqttError> {
    tokio::time::timeout(limit, async {
        loop {
            match eventloop.poll().await {
                Ok(e) if what(&e) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(MqttError::Connection(Box::new(e))),
            }
        }
    })
    .await
    .map_err(|_| MqttError::Timeout(limit))?
}
