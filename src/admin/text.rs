//! The status in the terminal (`portier status`): the same facts as the
//! page, as plain text lines. The words both share (ages, events, the
//! time) live here and the page imports them: `page` uses `text`, never
//! the other way round.

use std::fmt::Write;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::event::EventKind;
use crate::status::{DoorKindName, Status};

fn when(tz: &TimeZone, t: Timestamp) -> String {
    t.to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// Seconds as `3 d 4 h`, `5 h 12 min`, `7 min 3 s` or `42 s`.
pub(crate) fn age(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

/// One event in words, and a CSS class.
pub(crate) fn event_words(k: &EventKind) -> (String, &'static str) {
    match k {
        EventKind::AccessGranted {
            door,
            reader,
            credential,
        } => (
            format!("granted {credential} at {door} (reader {reader})"),
            "ok",
        ),
        EventKind::AccessDenied {
            door,
            reader,
            credential,
            reason,
        } => (
            format!(
                "denied {} at {door} (reader {reader}): {}",
                credential.as_deref().unwrap_or("unreadable card"),
                reason.words()
            ),
            "bad",
        ),
        EventKind::ExitRequest { door } => (format!("exit button at {door}"), ""),
        EventKind::DoorForced { door } => (format!("door {door} FORCED open"), "bad"),
        EventKind::DoorHeldOpen { door, stage } => (
            format!(
                "door {door} held open ({})",
                stage.as_str().replace('_', " ")
            ),
            "bad",
        ),
        EventKind::DoorClosed { door } => (format!("door {door} closed"), ""),
        EventKind::DoorModeChanged { door, mode } => (
            format!("door {door} mode: {}", mode.as_str().replace('_', " ")),
            "warn",
        ),
        EventKind::Presence {
            credential,
            name,
            direction,
        } => (
            format!(
                "{} went {direction} after hours ({credential})",
                name.as_deref().unwrap_or("someone")
            ),
            "",
        ),
        EventKind::PdOnline {
            bus,
            address,
            secure,
        } => (
            format!(
                "reader {bus}/{address} online{}",
                if *secure {
                    " (Secure Channel)"
                } else {
                    " (NO Secure Channel)"
                }
            ),
            if *secure { "ok" } else { "warn" },
        ),
        EventKind::PdOffline {
            bus,
            address,
            reason,
            alarm,
        } => (
            match alarm {
                Some(alarm) => format!("reader {bus}/{address} OFFLINE: security alarm {alarm}"),
                None => format!("reader {bus}/{address} OFFLINE: {reason}"),
            },
            "bad",
        ),
        EventKind::PdStatus {
            bus,
            address,
            tamper,
            power_failure,
        } => (
            format!(
                "reader {bus}/{address}: tamper {}, power {}",
                if *tamper { "ACTIVE" } else { "ok" },
                if *power_failure { "FAILURE" } else { "ok" }
            ),
            if *tamper || *power_failure {
                "bad"
            } else {
                "ok"
            },
        ),
        EventKind::SecurityAlarm {
            bus,
            address,
            alarm,
        } => (format!("SECURITY ALARM at {bus}/{address}: {alarm}"), "bad"),
        EventKind::RulesApplied { version } => (format!("rules version {version} applied"), "ok"),
        EventKind::RulesRefused { reason } => (format!("rules refused: {reason}"), "bad"),
        EventKind::AdminStarted {
            listen,
            fingerprint,
            cert_generated,
        } => (
            format!(
                "admin port started on {listen}, certificate {fingerprint}{}",
                if *cert_generated {
                    " (generated now)"
                } else {
                    ""
                }
            ),
            "",
        ),
        EventKind::AdminLogin {
            user,
            client,
            result,
        } => (
            format!(
                "admin login {user} from {client}: {}",
                result.replace('_', " ")
            ),
            if result == "ok" { "" } else { "warn" },
        ),
        EventKind::AdminAction {
            user,
            client,
            door,
            action,
            result,
        } => (
            format!("{user} ({client}) at {door}: {action}: {result}"),
            if result == "ok" { "warn" } else { "bad" },
        ),
        // The rest in the journal's own words; alarms stand out.
        other => (
            other.describe(),
            if other.must_keep() { "warn" } else { "" },
        ),
    }
}

/// What the gateway knows of the time, in words (page and terminal).
pub(super) fn time_words(t: &crate::status::TimeStatus) -> &'static str {
    match (t.trusted, t.confirmed) {
        (true, true) => "confirmed by central's signed time",
        (true, false) => {
            "not confirmed yet (no signed time beacon since start): scheduled unlocks wait; \
             an operator may confirm it (POST /api/v1/time/confirm)"
        }
        (false, _) => {
            "SYSTEM CLOCK NOT BELIEVED (stepped or outside the signed interval): \
             cards decided at both edges, scheduled unlocks wait"
        }
    }
}

/// Render a status snapshot as text.
pub fn status_text(s: &Status) -> String {
    let tz = TimeZone::get(&s.gateway.time_zone).unwrap_or(TimeZone::UTC);
    let g = &s.gateway;
    let mut o = String::new();
    let _ = writeln!(o, "{} · {} · portier {}", g.building, g.id, g.version);
    let _ = writeln!(
        o,
        "clock {} ({}), up {}",
        when(&tz, g.now),
        g.time_zone,
        age(g.uptime_secs)
    );
    let _ = writeln!(o, "time: {}", time_words(&g.time));
    match (&s.rules, &s.rules_untrusted) {
        (None, Some(u)) => {
            let _ = writeln!(
                o,
                "RULES UNTRUSTED: v{} on disk is signed by key {}, which is no longer trusted; \
                 every card is denied (rules_untrusted) until a snapshot signed by a trusted key \
                 is applied",
                u.version.map_or("?".into(), |v| v.to_string()),
                u.signer_key_id
            );
        }
        (None, None) => {
            let _ = writeln!(o, "RULES: none in force (every card is denied)");
        }
        (Some(r), _) => {
            let _ = writeln!(
                o,
                "rules v{} issued {} ({} ago), signer {}, {} credentials{}",
                r.version,
                when(&tz, r.issued_at),
                age(r.age_secs),
                r.signer_key_id,
                r.credentials,
                if r.too_old { ", TOO OLD" } else { "" }
            );
        }
    }
    let u = &s.uplink;
    let _ = writeln!(
        o,
        "uplink {}{}, backlog {}{}{}",
        if !u.configured {
            "not configured"
        } else if u.connected {
            "connected"
        } else {
            "DISCONNECTED"
        },
        u.broker
            .as_deref()
            .map(|b| format!(" ({b})"))
            .unwrap_or_default(),
        u.backlog,
        u.oldest_backlog_age_secs
            .map(|a| format!(", oldest {}", age(a)))
            .unwrap_or_default(),
        u.last_ack_at
            .map(|t| format!(", last ack {}", when(&tz, t)))
            .unwrap_or_default()
    );
    for b in &s.buses {
        let _ = writeln!(o, "bus {} ({})", b.name, b.device);
        for p in &b.pds {
            let _ = writeln!(
                o,
                "  pd {:>3} {:<7} {}{} last reply {}{}{}{}",
                p.address,
                p.role,
                if p.online { "online " } else { "OFFLINE" },
                if p.secure_channel { " SC" } else { " no-SC" },
                p.last_reply_age_ms.map_or_else(
                    || "never".to_owned(),
                    |ms| format!("{:.1} s ago", ms as f64 / 1000.0)
                ),
                if p.tamper { " TAMPER" } else { "" },
                if p.power_failure {
                    " POWER-FAILURE"
                } else {
                    ""
                },
                p.identity
                    .as_ref()
                    .map(|i| format!(
                        " [{} m{} s{} fw {}]",
                        i.vendor, i.model, i.serial, i.firmware
                    ))
                    .unwrap_or_default()
            );
        }
    }
    for d in &s.doors {
        let mut state = vec![if d.locked { "locked" } else { "RELEASED" }];
        if d.kind == DoorKindName::Standard {
            state.push(if d.open { "open" } else { "closed" });
        }
        if d.forced {
            state.push("FORCED");
        }
        if d.held_open {
            state.push("HELD-OPEN");
        }
        let _ = writeln!(
            o,
            "door {} ({}) mode {}{}: {}{}",
            d.id,
            match d.kind {
                DoorKindName::Standard => "standard",
                DoorKindName::Revolving => "revolving",
            },
            d.mode,
            d.override_state
                .as_ref()
                .map(|ov| format!(", override {} until {}", ov.state, when(&tz, ov.until)))
                .unwrap_or_default(),
            state.join(", "),
            match d.schedule_open {
                Some(true) => ", schedule open",
                Some(false) => ", schedule closed",
                None => "",
            }
        );
    }
    let _ = writeln!(o, "inside: {}", s.presence.len());
    for p in &s.presence {
        let _ = writeln!(
            o,
            "  {} ({}) since {}",
            p.name.as_deref().unwrap_or("(no name)"),
            p.credential,
            when(&tz, p.since)
        );
    }
    let _ = writeln!(o, "recent events:");
    for e in &s.recent_events {
        let (what, _) = event_words(&e.kind);
        let code = match &e.kind {
            EventKind::AccessDenied { reason, .. } => format!(" [{reason}]"),
            _ => String::new(),
        };
        let _ = writeln!(o, "  {:>8} {} {what}{code}", e.seq, when(&tz, e.at));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_well() {
        assert_eq!(age(42), "42 s");
        assert_eq!(age(423), "7 min 3 s");
        assert_eq!(age(3 * 3600 + 120), "3 h 2 min");
        assert_eq!(age(2 * 86400 + 3600), "2 d 1 h");
    }
}
