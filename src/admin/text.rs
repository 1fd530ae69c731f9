//! The status in the terminal (`portier status`): the same facts as the
//! page, as plain text lines. The words both share (ages, events, the
//! time) live here and the page imports them: `page` uses `text`, never
//! the other way round.

use std::fmt::Write;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::event::{EventKind, Tone};
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

/// One event in words (the journal's own, [`EventKind::describe`]) and
/// the CSS class of its [`Tone`].
pub(crate) fn event_words(k: &EventKind) -> (String, &'static str) {
    let class = match k.tone() {
        Tone::Plain => "",
        Tone::Good => "ok",
        Tone::Notice => "warn",
        Tone::Bad => "bad",
    };
    (k.describe(), class)
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
    if !s.fire_alarms.is_empty() {
        let _ = writeln!(
            o,
            "FIRE ALARM active: {} (escape doors released)",
            s.fire_alarms.join(", ")
        );
    }
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
                        " [{} m{} v{} s{} fw {}]",
                        i.vendor, i.model, i.version, i.serial, i.firmware
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
    for g in &s.interlocks {
        let _ = writeln!(
            o,
            "interlock {}: {} — {}{}",
            g.id,
            g.doors.join(", "),
            if g.busy.is_empty() {
                "all closed and locked".to_owned()
            } else {
                format!("open or released: {}", g.busy.join(", "))
            },
            match g.waiting {
                0 => String::new(),
                n => format!(", {n} waiting"),
            }
        );
    }
    let _ = writeln!(o, "inside: {}", s.presence.len());
    o.push_str(&muster_text(&s.presence, &tz));
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

/// The muster list as lines: who, in which area, since when, through
/// which door (`portier status`, `portier status --muster`).
pub fn muster_text(inside: &[crate::status::PresenceEntry], tz: &TimeZone) -> String {
    let mut o = String::new();
    for p in inside {
        let _ = writeln!(
            o,
            "  {} ({}) in {} since {}{}",
            p.name.as_deref().unwrap_or("(no name)"),
            p.credential,
            p.area.as_deref().unwrap_or("the building"),
            when(tz, p.since),
            p.door
                .as_deref()
                .map(|d| format!(", last door {d}"))
                .unwrap_or_default()
        );
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
