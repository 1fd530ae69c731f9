//! Prometheus metrics (`/metrics`, text exposition format) with
//! `prometheus-client`.
//!
//! The daemon holds a [`Metrics`] handle (cheap to clone) and counts what
//! only it sees: decisions ([`Metrics::decision`]) and poll round trips
//! ([`Metrics::poll_round_trip`]). Gauges that describe state (PD online /
//! Secure Channel, backlog, snapshot age, uplink) are set from the status
//! snapshot at every scrape ([`Metrics::observe_status`]), so they are never
//! stale and the daemon need not push them.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::status::Status;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabels {
    result: String,
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PdLabels {
    bus: String,
    address: String,
}

/// A reader's identity as labels of `portier_pd_info` (value 1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PdInfoLabels {
    bus: String,
    address: String,
    vendor: String,
    model: String,
    serial: String,
    firmware: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BusLabels {
    bus: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

type Rtt = Family<BusLabels, Histogram, fn() -> Histogram>;

fn rtt_histogram() -> Histogram {
    // 1 ms … ~4 s: OSDP replies come within 200 ms at 9600 Bd.
    Histogram::new(exponential_buckets(0.001, 2.0, 13))
}

struct Inner {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    pd_online: Family<PdLabels, Gauge>,
    pd_secure: Family<PdLabels, Gauge>,
    pd_info: Family<PdInfoLabels, Gauge>,
    poll_rtt: Rtt,
    backlog: Gauge,
    backlog_age: Gauge<f64, AtomicU64>,
    snapshot_age: Gauge<f64, AtomicU64>,
    rules_version: Gauge,
    rules_too_old: Gauge,
    rules_untrusted: Gauge,
    uplink_connected: Gauge,
    uptime: Gauge,
    fire_alarms: Gauge,
    duress: Gauge,
    logins: Family<ResultLabels, Counter>,
    actions: Family<ResultLabels, Counter>,
}

/// The metrics handle. Clones share the same registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every Portier metric (all prefixed `portier_`).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portier");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Access decisions by result (grant/deny) and deny reason",
            decisions.clone(),
        );
        let pd_online = Family::<PdLabels, Gauge>::default();
        registry.register(
            "pd_online",
            "PD online (1) or offline (0)",
            pd_online.clone(),
        );
        let pd_secure = Family::<PdLabels, Gauge>::default();
        registry.register(
            "pd_secure_channel",
            "PD in Secure Channel (1) or not (0)",
            pd_secure.clone(),
        );
        let pd_info = Family::<PdInfoLabels, Gauge>::default();
        registry.register(
            "pd_info",
            "A PD's identity (PDID) as labels; always 1",
            pd_info.clone(),
        );
        let poll_rtt: Rtt = Family::new_with_constructor(rtt_histogram);
        registry.register(
            "poll_round_trip_seconds",
            "Time from sending a command to a PD to its reply",
            poll_rtt.clone(),
        );
        let backlog = Gauge::default();
        registry.register(
            "event_backlog",
            "Events not yet acknowledged by the central system",
            backlog.clone(),
        );
        let backlog_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "event_backlog_oldest_age_seconds",
            "Age of the oldest unacknowledged event (0 when none)",
            backlog_age.clone(),
        );
        let snapshot_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "rules_snapshot_age_seconds",
            "Age of the rule snapshot in force (since issue); absent rules give -1",
            snapshot_age.clone(),
        );
        let rules_version = Gauge::default();
        registry.register(
            "rules_version",
            "Version of the rule snapshot in force (0 when none)",
            rules_version.clone(),
        );
        let rules_too_old = Gauge::default();
        registry.register(
            "rules_too_old",
            "The rules are older than some door class allows (1) or not (0)",
            rules_too_old.clone(),
        );
        let rules_untrusted = Gauge::default();
        registry.register(
            "rules_untrusted",
            "The rules on disk are signed by a key no longer trusted: every card is denied (1) or not (0)",
            rules_untrusted.clone(),
        );
        let uplink_connected = Gauge::default();
        registry.register(
            "uplink_connected",
            "Connected to the central broker (1) or not (0)",
            uplink_connected.clone(),
        );
        let uptime = Gauge::default();
        registry.register(
            "uptime_seconds",
            "Seconds since the daemon started",
            uptime.clone(),
        );
        let fire_alarms = Gauge::default();
        registry.register(
            "fire_alarms_active",
            "Fire-alarm inputs active now (their escape doors are released)",
            fire_alarms.clone(),
        );
        let duress = Gauge::default();
        registry.register(
            "duress_alarms",
            "Duress alarms (a duress PIN typed) since the daemon started",
            duress.clone(),
        );
        let logins = Family::<ResultLabels, Counter>::default();
        registry.register(
            "admin_logins",
            "Admin port logins by result (ok, failed, locked_out)",
            logins.clone(),
        );
        let actions = Family::<ResultLabels, Counter>::default();
        registry.register(
            "admin_actions",
            "Admin door actions by result (ok, refused, forbidden)",
            actions.clone(),
        );
        Self(Arc::new(Inner {
            registry,
            decisions,
            pd_online,
            pd_secure,
            pd_info,
            poll_rtt,
            backlog,
            backlog_age,
            snapshot_age,
            rules_version,
            rules_too_old,
            rules_untrusted,
            uplink_connected,
            uptime,
            fire_alarms,
            duress,
            logins,
            actions,
        }))
    }

    /// Count one decision: `reason` is `None` for a grant, the contract's
    /// reason code for a deny.
    pub fn decision(&self, reason: Option<&str>) {
        let labels = match reason {
            None => DecisionLabels {
                result: "grant".into(),
                reason: String::new(),
            },
            Some(r) => DecisionLabels {
                result: "deny".into(),
                reason: r.into(),
            },
        };
        self.0.decisions.get_or_create(&labels).inc();
    }

    /// Record a poll round trip on a bus.
    pub fn poll_round_trip(&self, bus: &str, rtt: Duration) {
        self.0
            .poll_rtt
            .get_or_create(&BusLabels { bus: bus.into() })
            .observe(rtt.as_secs_f64());
    }

    pub(crate) fn login(&self, result: &str) {
        self.0
            .logins
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub(crate) fn action(&self, result: &str) {
        self.0
            .actions
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    /// Set the state gauges from a status snapshot (done at each scrape).
    pub fn observe_status(&self, s: &Status) {
        let i = &self.0;
        i.pd_online.clear();
        i.pd_secure.clear();
        i.pd_info.clear();
        for bus in &s.buses {
            for pd in &bus.pds {
                let l = PdLabels {
                    bus: bus.name.clone(),
                    address: pd.address.to_string(),
                };
                i.pd_online.get_or_create(&l).set(i64::from(pd.online));
                i.pd_secure
                    .get_or_create(&l)
                    .set(i64::from(pd.secure_channel));
                if let Some(id) = &pd.identity {
                    let info = PdInfoLabels {
                        bus: l.bus.clone(),
                        address: l.address.clone(),
                        vendor: id.vendor.clone(),
                        model: id.model.to_string(),
                        serial: id.serial.to_string(),
                        firmware: id.firmware.clone(),
                    };
                    i.pd_info.get_or_create(&info).set(1);
                }
            }
        }
        i.backlog
            .set(i64::try_from(s.uplink.backlog).unwrap_or(i64::MAX));
        i.fire_alarms
            .set(i64::try_from(s.fire_alarms.len()).unwrap_or(i64::MAX));
        i.duress
            .set(i64::try_from(s.duress_since_start).unwrap_or(i64::MAX));
        i.backlog_age
            .set(s.uplink.oldest_backlog_age_secs.unwrap_or(0) as f64);
        match &s.rules {
            Some(r) => {
                i.snapshot_age.set(r.age_secs as f64);
                i.rules_version
                    .set(i64::try_from(r.version).unwrap_or(i64::MAX));
                i.rules_too_old.set(i64::from(r.too_old));
            }
            None => {
                i.snapshot_age.set(-1.0);
                i.rules_version.set(0);
                i.rules_too_old.set(0);
            }
        }
        i.rules_untrusted
            .set(i64::from(s.rules_untrusted.is_some()));
        i.uplink_connected.set(i64::from(s.uplink.connected));
        i.uptime
            .set(i64::try_from(s.gateway.uptime_secs).unwrap_or(i64::MAX));
    }

    /// The text exposition (OpenMetrics text, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}

/// The daemon reports its decisions through the core's observer trait, so
/// it needs to know nothing of the admin port.
impl crate::site::DecisionObserver for Metrics {
    fn decided(&self, deny: Option<crate::rules::DenyReason>) {
        self.decision(deny.map(crate::rules::DenyReason::as_str));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_encodes() {
        let m = Metrics::new();
        m.decision(None);
        m.decision(Some("outside_schedule"));
        m.decision(Some("outside_schedule"));
        m.poll_round_trip("bus0", Duration::from_millis(12));
        let t = m.encode();
        assert!(
            t.contains("portier_decisions_total{result=\"deny\",reason=\"outside_schedule\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("portier_decisions_total{result=\"grant\",reason=\"\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("portier_poll_round_trip_seconds_count{bus=\"bus0\"} 1"),
            "{t}"
        );
        assert!(t.ends_with("# EOF\n"), "{t}");
    }
}
