//! Server-rendered HTML: the status page, its live fragment, the login
//! form, the confirmation step of door actions and result messages.
//!
//! Guarantees: every value from the status, the backend or the request is
//! HTML-escaped ([`escape`]); the only script and style are the inline
//! constants below, allowed by hash in the Content-Security-Policy
//! ([`csp`]), so no injected markup could run script; the page works
//! without JavaScript (forms and links), and with it `#live` refreshes
//! itself from `/live`.

use std::fmt::Write;
use std::sync::LazyLock;

use base64::Engine;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use sha2::{Digest, Sha256};

use super::backend::{DoorCommand, WhyAnswer, WhyDecision};
use super::text::{age, event_words};
use crate::event::Event;
use crate::status::{DoorKindName, DoorStatus, PdStatus, Status};

/// Who is looking at the page.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    /// User or token name.
    pub(crate) name: String,
    /// May act on doors.
    pub(crate) operator: bool,
    /// CSRF token for this session's forms.
    pub(crate) csrf: String,
}

/// The "why" box's result.
#[derive(Debug, Clone)]
pub(crate) enum WhyView {
    /// An answer from the rules.
    Answer {
        door: String,
        card: String,
        answer: WhyAnswer,
    },
    /// The question could not be asked.
    Error {
        door: String,
        card: String,
        message: String,
    },
}

const STYLE: &str = r#"
:root{--ok:#176b2c;--bad:#b3261e;--warn:#8a5a00;--mute:#5f6368;--bg:#f6f7f9;--card:#fff;--line:#dde1e6}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;background:var(--bg);color:#1d1f23}
header{background:#1f2a37;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;justify-content:space-between}
header h1{font-size:1.1rem;margin:0}
header form{margin:0}
header .who{font-size:.9rem;opacity:.9}
main{max-width:1100px;margin:0 auto;padding:.75rem}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.75rem 1rem;margin:.75rem 0}
h2{font-size:1rem;margin:0 0 .5rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top;white-space:nowrap}
td.wrap{white-space:normal}
section.fire{background:#b00020;color:#fff;border-color:#7a0016}section.fire h2{font-size:1.4rem}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}.warn{color:var(--warn);font-weight:600}.mute{color:var(--mute)}
.badges{display:flex;flex-wrap:wrap;gap:.4rem}
.badge{border-radius:999px;padding:.15rem .6rem;font-size:.85rem;border:1px solid var(--line);background:#fff}
.badge.ok{border-color:var(--ok)}.badge.bad{border-color:var(--bad);background:#fdecea}.badge.warn{border-color:var(--warn);background:#fff6e0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}
dt{color:var(--mute)}dd{margin:0}
form.inline{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;margin:.4rem 0}
label{display:flex;flex-direction:column;font-size:.85rem;color:var(--mute)}
input,select,button{font:inherit;padding:.35rem .5rem;border:1px solid #b8bec6;border-radius:6px;background:#fff;color:#1d1f23}
button{background:#1f5fbf;color:#fff;border-color:#1f5fbf;cursor:pointer}
button.danger{background:var(--bad);border-color:var(--bad)}
a.button{display:inline-block;padding:.35rem .7rem;border:1px solid #b8bec6;border-radius:6px;color:#1d1f23;text-decoration:none}
.answer{border-left:4px solid var(--line);padding:.4rem .75rem;margin-top:.5rem;background:#fafbfc}
.answer.grant{border-color:var(--ok)}.answer.deny{border-color:var(--bad)}
#refreshed{font-size:.8rem;color:var(--mute)}
.login{max-width:380px;margin:3rem auto}
.login form{display:flex;flex-direction:column;gap:.6rem}
@media (max-width:600px){main{padding:.4rem}section{padding:.6rem}th,td{padding:.25rem .35rem}}
@media print{header,form,button,section{display:none}section#presence{display:block;border:0}.scroll{overflow:visible}}
"#;

const SCRIPT: &str = r#"
(function(){
  var live=document.getElementById('live'), stamp=document.getElementById('refreshed');
  if(!live||!window.fetch) return;
  var every=parseInt(live.getAttribute('data-refresh-ms'),10)||5000;
  stamp.textContent='live: refreshes every '+Math.round(every/1000)+' s';
  function tick(){
    if(document.hidden) return;
    fetch('/live',{credentials:'same-origin'}).then(function(r){
      if(r.redirected||r.status===401){location.reload();return null;}
      if(!r.ok) throw new Error('HTTP '+r.status);
      return r.text();
    }).then(function(t){
      if(t===null) return;
      live.innerHTML=t;
      stamp.textContent='live: updated '+new Date().toLocaleTimeString();
    }).catch(function(e){stamp.textContent='refresh failed ('+e.message+'), retrying';});
  }
  setInterval(tick,every);
})();
"#;

fn sha256_b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s.as_bytes()))
}

static CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; \
         img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        sha256_b64(SCRIPT),
        sha256_b64(STYLE)
    )
});

/// The Content-Security-Policy of every HTML page.
pub(crate) fn csp() -> &'static str {
    &CSP
}

/// Escape text for HTML element content and quoted attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn shell(title: &str, viewer: Option<&Viewer>, body: &str, script: bool) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><header><h1>{}</h1>",
        escape(title),
        escape(title)
    );
    if let Some(v) = viewer {
        let _ = write!(
            h,
            "<span class=\"who\">{} ({})</span>",
            escape(&v.name),
            if v.operator { "operator" } else { "viewer" }
        );
        if !v.csrf.is_empty() {
            let _ = write!(
                h,
                "<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <button type=\"submit\">Log out</button></form>",
                escape(&v.csrf)
            );
        }
    }
    h.push_str("</header><main>");
    h.push_str(body);
    h.push_str("</main>");
    if script {
        let _ = write!(h, "<script>{SCRIPT}</script>");
    }
    h.push_str("</body></html>");
    h
}

/// The login form. `csrf` is also set as the login cookie.
pub(crate) fn login(csrf: &str, message: Option<&str>, no_users: bool) -> String {
    let mut b = String::from("<section class=\"login\"><h2>Log in</h2>");
    if no_users {
        b.push_str(
            "<p class=\"warn\">No admin users are configured yet, so nobody can log in. \
             On the gateway, run <code>portier admin passwd --config /etc/portier/portier.toml \
             --user NAME --role operator</code> and type the new password; it takes effect \
             without a restart.</p>",
        );
    }
    if let Some(m) = message {
        let _ = write!(b, "<p class=\"bad\" id=\"login-error\">{}</p>", escape(m));
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>User name<input name=\"user\" id=\"user\" autocomplete=\"username\" required></label>\
         <label>Password<input name=\"password\" id=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\" id=\"login\">Log in</button></form></section>",
        escape(csrf)
    );
    shell("Portier admin", None, &b, false)
}

/// A result or error page with a way back.
pub(crate) fn message(viewer: Option<&Viewer>, title: &str, text: &str, ok: bool) -> String {
    let b = format!(
        "<section><h2 class=\"{}\" id=\"result-title\">{}</h2><p id=\"result\">{}</p>\
         <p><a class=\"button\" href=\"/\">Back to the status page</a></p></section>",
        if ok { "ok" } else { "bad" },
        escape(title),
        escape(text)
    );
    shell("Portier admin", viewer, &b, false)
}

/// The confirmation step of a door action.
pub(crate) fn confirm(v: &Viewer, door: &str, cmd: &DoorCommand, path: &str) -> String {
    let mut fields = String::new();
    match cmd {
        DoorCommand::Unlock { seconds } => {
            let _ = write!(
                fields,
                "<input type=\"hidden\" name=\"seconds\" value=\"{seconds}\">"
            );
        }
        DoorCommand::Override { state, minutes } => {
            let s = match state {
                super::OverrideChoice::Unlocked => "unlocked",
                super::OverrideChoice::Locked => "locked",
            };
            let _ = write!(
                fields,
                "<input type=\"hidden\" name=\"state\" value=\"{s}\">\
                 <input type=\"hidden\" name=\"minutes\" value=\"{minutes}\">"
            );
        }
        DoorCommand::ReleasePassage { direction } => {
            let d = match direction {
                super::PassageDirection::In => "in",
                super::PassageDirection::Out => "out",
            };
            let _ = write!(
                fields,
                "<input type=\"hidden\" name=\"direction\" value=\"{d}\">"
            );
        }
    }
    let b = format!(
        "<section><h2>Confirm</h2><p id=\"confirm-text\">Door <strong>{door}</strong>: {what}?</p>\
         <p class=\"mute\">This acts on the real door and is recorded as an event with your name.</p>\
         <form method=\"post\" action=\"/doors/{door_path}/{path}\" class=\"inline\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{fields}\
         <button type=\"submit\" class=\"danger\" id=\"confirm\">Yes, {what}</button>\
         <a class=\"button\" href=\"/\">Cancel</a></form></section>",
        door = escape(door),
        door_path = escape(&percent_path(door)),
        what = escape(&cmd.describe()),
        csrf = escape(&v.csrf),
    );
    shell("Portier admin", Some(v), &b, false)
}

/// Percent-encode a path segment (door ids are usually plain).
fn percent_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn tz_of(s: &Status) -> TimeZone {
    TimeZone::get(&s.gateway.time_zone).unwrap_or(TimeZone::UTC)
}

fn when(tz: &TimeZone, t: Timestamp) -> String {
    t.to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

fn yes_no(b: bool, yes: &str, no: &str, yes_class: &str, no_class: &str) -> String {
    if b {
        format!("<span class=\"{yes_class}\">{yes}</span>")
    } else {
        format!("<span class=\"{no_class}\">{no}</span>")
    }
}

/// The page's auto-refreshed part.
pub(crate) fn live(s: &Status) -> String {
    let tz = tz_of(s);
    let mut h = String::new();
    fire_banner(&mut h, s);
    summary(&mut h, s);
    gateway(&mut h, s, &tz);
    buses(&mut h, s);
    doors(&mut h, s, &tz);
    interlocks(&mut h, s);
    uplink(&mut h, s, &tz);
    presence(&mut h, s, &tz);
    events(&mut h, &s.recent_events, &tz);
    h
}

fn summary(h: &mut String, s: &Status) {
    let pds: Vec<&PdStatus> = s.buses.iter().flat_map(|b| &b.pds).collect();
    let online = pds.iter().filter(|p| p.online).count();
    let mut badges = Vec::new();
    badges.push(match &s.rules {
        None => ("bad", "no rules in force".to_owned()),
        Some(r) if r.too_old => ("bad", format!("rules v{} too old", r.version)),
        Some(r) => ("ok", format!("rules v{}", r.version)),
    });
    badges.push((
        if online == pds.len() { "ok" } else { "bad" },
        format!("readers online {online}/{}", pds.len()),
    ));
    let alarms = s.doors.iter().filter(|d| d.forced || d.held_open).count();
    badges.push(if alarms == 0 {
        ("ok", "no door alarms".to_owned())
    } else {
        ("bad", format!("{alarms} door alarm(s)"))
    });
    badges.push(match (s.uplink.configured, s.uplink.connected) {
        (false, _) => ("warn", "no uplink configured".to_owned()),
        (true, true) => ("ok", "uplink connected".to_owned()),
        (true, false) => ("bad", "uplink disconnected".to_owned()),
    });
    badges.push((
        if s.uplink.backlog == 0 { "ok" } else { "warn" },
        format!("backlog {}", s.uplink.backlog),
    ));
    h.push_str("<section id=\"summary\"><div class=\"badges\">");
    for (class, text) in badges {
        let _ = write!(h, "<span class=\"badge {class}\">{}</span>", escape(&text));
    }
    h.push_str("</div></section>");
}

/// The red banner over everything while a fire alarm is active.
fn fire_banner(h: &mut String, s: &Status) {
    if s.fire_alarms.is_empty() {
        return;
    }
    let inputs: Vec<String> = s.fire_alarms.iter().map(|i| escape(i)).collect();
    let _ = write!(
        h,
        "<section id=\"fire-alarm\" class=\"fire\" role=\"alert\"><h2>FIRE ALARM</h2>\
         <p>Active: {}. The escape doors are released and stay released until the fire \
         panel clears; lockdown and remote commands do not lock them.</p></section>",
        inputs.join(", ")
    );
}

fn gateway(h: &mut String, s: &Status, tz: &TimeZone) {
    let g = &s.gateway;
    let _ = write!(
        h,
        "<section id=\"gateway\"><h2>Gateway</h2><dl>\
         <dt>Building</dt><dd>{}</dd><dt>Gateway</dt><dd>{}</dd>\
         <dt>Version</dt><dd>{}</dd><dt>Up</dt><dd>{} (since {})</dd>\
         <dt>Clock</dt><dd id=\"clock\">{}</dd><dt>Time zone</dt><dd>{}</dd>",
        escape(&g.building),
        escape(&g.id),
        escape(&g.version),
        age(g.uptime_secs),
        escape(&when(tz, g.started_at)),
        escape(&when(tz, g.now)),
        escape(&g.time_zone),
    );
    let _ = write!(
        h,
        "<dt>Time</dt><dd id=\"time\" class=\"{}\">{}</dd>",
        if g.time.confirmed { "ok" } else { "warn" },
        escape(super::text::time_words(&g.time)),
    );
    match (&s.rules, &s.rules_untrusted) {
        (None, Some(u)) => {
            let _ = write!(
                h,
                "<dt>Rules</dt><dd class=\"bad\" id=\"rules\">UNTRUSTED: version {} on disk is \
                 signed by key {}, which is no longer trusted; every card is denied \
                 (rules_untrusted) until a snapshot signed by a trusted key is applied</dd>",
                u.version.map_or("?".into(), |v| v.to_string()),
                escape(&u.signer_key_id),
            );
        }
        (None, None) => h.push_str(
            "<dt>Rules</dt><dd class=\"bad\" id=\"rules\">none in force: every card is denied</dd>",
        ),
        (Some(r), _) => {
            let _ = write!(
                h,
                "<dt>Rules</dt><dd id=\"rules\">version {} issued {} ({} ago){}</dd>\
                 <dt>Signed by</dt><dd>key {}</dd><dt>Credentials</dt><dd>{}</dd>",
                r.version,
                escape(&when(tz, r.issued_at)),
                age(r.age_secs),
                if r.too_old {
                    " <span class=\"bad\">TOO OLD: some doors deny (rules_too_old)</span>"
                } else {
                    ""
                },
                escape(&r.signer_key_id),
                r.credentials
            );
        }
    }
    h.push_str("</dl></section>");
}

fn buses(h: &mut String, s: &Status) {
    h.push_str("<section id=\"buses\"><h2>Buses and readers</h2>");
    if s.buses.is_empty() {
        h.push_str("<p class=\"mute\">No buses configured.</p>");
    }
    for b in &s.buses {
        let _ = write!(
            h,
            "<h3>{} <span class=\"mute\">{}</span></h3><div class=\"scroll\"><table>\
             <tr><th>Addr</th><th>Role</th><th>State</th><th>Secure Channel</th><th>Last reply</th>\
             <th>Tamper</th><th>Power</th><th>Identity / firmware</th><th>Capabilities</th></tr>",
            escape(&b.name),
            escape(&b.device)
        );
        for p in &b.pds {
            let state = if p.online {
                "<span class=\"ok\">online</span>".to_owned()
            } else {
                format!(
                    "<span class=\"bad\">offline</span>{}",
                    p.offline_reason
                        .as_deref()
                        .map(|r| format!(" <span class=\"mute\">({})</span>", escape(r)))
                        .unwrap_or_default()
                )
            };
            let ident = p.identity.as_ref().map_or_else(
                || "<span class=\"mute\">unknown</span>".to_owned(),
                |i| {
                    escape(&format!(
                        "vendor {} model {} v{} serial {} fw {}",
                        i.vendor, i.model, i.version, i.serial, i.firmware
                    ))
                },
            );
            let state = match &p.update {
                Some(u) => format!(
                    "{state} <span class=\"warn\">updating {}/{} bytes</span>",
                    u.confirmed, u.total
                ),
                None => state,
            };
            let caps = escape(
                &p.capabilities
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            let _ = write!(
                h,
                "<tr data-bus=\"{}\" data-address=\"{}\" data-online=\"{}\"><td>{}</td><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"firmware\">{ident}</td><td class=\"caps\">{caps}</td></tr>",
                escape(&b.name),
                p.address,
                p.online,
                p.address,
                escape(&p.role),
                yes_no(p.secure_channel, "yes", "no", "ok", "warn"),
                p.last_reply_age_ms.map_or_else(
                    || "never".to_owned(),
                    |ms| format!("{:.1} s ago", ms as f64 / 1000.0)
                ),
                yes_no(p.tamper, "TAMPER", "ok", "bad", "ok"),
                yes_no(p.power_failure, "FAILURE", "ok", "bad", "ok"),
            );
        }
        h.push_str("</table></div>");
    }
    h.push_str("</section>");
}

fn door_state(d: &DoorStatus) -> String {
    let mut parts = vec![yes_no(d.locked, "locked", "released", "ok", "warn")];
    if d.kind == DoorKindName::Standard {
        parts.push(yes_no(d.open, "open", "closed", "warn", "ok"));
    }
    if d.forced {
        parts.push("<span class=\"bad\">FORCED</span>".into());
    }
    if d.held_open {
        parts.push("<span class=\"bad\">HELD OPEN</span>".into());
    }
    parts.join(", ")
}

fn doors(h: &mut String, s: &Status, tz: &TimeZone) {
    h.push_str(
        "<section id=\"doors\"><h2>Doors</h2><div class=\"scroll\"><table>\
         <tr><th>Door</th><th>Kind</th><th>Mode</th><th>Override</th><th>State</th><th>Schedule now</th></tr>",
    );
    for d in &s.doors {
        let kind = match d.kind {
            DoorKindName::Standard => "standard",
            DoorKindName::Revolving => "revolving",
        };
        let ov = d.override_state.as_ref().map_or_else(
            || "<span class=\"mute\">none</span>".to_owned(),
            |o| {
                format!(
                    "<span class=\"warn\">{} until {}</span>",
                    escape(&o.state),
                    escape(&when(tz, o.until))
                )
            },
        );
        let sched = match d.schedule_open {
            None => "<span class=\"mute\">none</span>".to_owned(),
            Some(true) => "open".to_owned(),
            Some(false) => "closed".to_owned(),
        };
        let _ = write!(
            h,
            "<tr data-door=\"{}\"><td>{}</td><td>{kind}</td><td>{}</td><td>{ov}</td><td>{}</td><td>{sched}</td></tr>",
            escape(&d.id),
            escape(&d.id),
            escape(&d.mode.replace('_', " ")),
            door_state(d),
        );
    }
    h.push_str("</table></div></section>");
}

fn uplink(h: &mut String, s: &Status, tz: &TimeZone) {
    let u = &s.uplink;
    let _ = write!(
        h,
        "<section id=\"uplink\"><h2>Uplink</h2><dl><dt>Broker</dt><dd>{}</dd><dt>Connected</dt><dd>{}</dd>\
         <dt>Last ack</dt><dd>{}</dd><dt>Backlog</dt><dd>{} event(s){}</dd></dl></section>",
        u.broker
            .as_deref()
            .map_or_else(|| "not configured".to_owned(), escape),
        if !u.configured {
            "<span class=\"mute\">n/a</span>".to_owned()
        } else {
            yes_no(u.connected, "yes", "NO", "ok", "bad")
        },
        match (u.last_ack_at, u.last_ack_seq) {
            (Some(t), Some(seq)) => format!("event {seq} at {}", escape(&when(tz, t))),
            (Some(t), None) => escape(&when(tz, t)),
            _ => "never".to_owned(),
        },
        u.backlog,
        u.oldest_backlog_age_secs
            .map(|a| format!(", oldest {} old", age(a)))
            .unwrap_or_default()
    );
}

/// The muster list: who is inside which area, since when, through which
/// door. Printing the page prints this section alone (`@media print`).
fn presence(h: &mut String, s: &Status, tz: &TimeZone) {
    let _ = write!(
        h,
        "<section id=\"presence\"><h2>Inside now — muster list ({}), {}</h2>",
        s.presence.len(),
        escape(&when(tz, s.gateway.now))
    );
    if s.presence.is_empty() {
        h.push_str("<p class=\"mute\">Nobody recorded inside.</p>");
    } else {
        h.push_str(
            "<div class=\"scroll\"><table><tr><th>Name</th><th>Card</th><th>Area</th>\
             <th>Since</th><th>Last door</th></tr>",
        );
        for p in &s.presence {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(p.name.as_deref().unwrap_or("(no name)")),
                escape(&p.credential),
                escape(p.area.as_deref().unwrap_or("building")),
                escape(&when(tz, p.since)),
                escape(p.door.as_deref().unwrap_or("")),
            );
        }
        h.push_str("</table></div>");
    }
    h.push_str("</section>");
}

/// The interlocks (airlocks): which doors are open or released, and how
/// many wait.
fn interlocks(h: &mut String, s: &Status) {
    if s.interlocks.is_empty() {
        return;
    }
    h.push_str(
        "<section id=\"interlocks\"><h2>Airlocks</h2><div class=\"scroll\"><table>\
         <tr><th>Interlock</th><th>Doors</th><th>Open or released</th><th>Waiting</th></tr>",
    );
    for g in &s.interlocks {
        let busy = if g.busy.is_empty() {
            "<span class=\"ok\">none</span>".to_owned()
        } else {
            let class = if g.busy.len() > 1 { "bad" } else { "warn" };
            format!(
                "<span class=\"{class}\">{}</span>",
                escape(&g.busy.join(", "))
            )
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{busy}</td><td>{}</td></tr>",
            escape(&g.id),
            escape(&g.doors.join(", ")),
            g.waiting
        );
    }
    h.push_str("</table></div></section>");
}

fn events(h: &mut String, events: &[Event], tz: &TimeZone) {
    h.push_str("<section id=\"events\"><h2>Recent events</h2>");
    if events.is_empty() {
        h.push_str("<p class=\"mute\">No events.</p>");
    } else {
        h.push_str("<div class=\"scroll\"><table><tr><th>#</th><th>Time</th><th>What</th></tr>");
        for e in events.iter().rev() {
            let (what, class) = event_words(&e.kind);
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"wrap {class}\">{}</td></tr>",
                e.seq,
                escape(&when(tz, e.at)),
                escape(&what)
            );
        }
        h.push_str("</table></div>");
    }
    h.push_str("</section>");
}

fn door_options(s: &Status, selected: &str, only: Option<DoorKindName>) -> String {
    let mut o = String::new();
    for d in s.doors.iter().filter(|d| only.is_none_or(|k| d.kind == k)) {
        let _ = write!(
            o,
            "<option value=\"{id}\"{sel}>{id}</option>",
            id = escape(&d.id),
            sel = if d.id == selected { " selected" } else { "" }
        );
    }
    o
}

fn why_box(h: &mut String, s: &Status, why: Option<&WhyView>) {
    let (door, card) = match why {
        Some(WhyView::Answer { door, card, .. } | WhyView::Error { door, card, .. }) => {
            (door.as_str(), card.as_str())
        }
        None => ("", ""),
    };
    let _ = write!(
        h,
        "<section id=\"why\"><h2>Why? A card at a door, now</h2>\
         <form method=\"get\" action=\"/\" class=\"inline\">\
         <label>Card (42:1001 or 9501f480/26)<input name=\"card\" id=\"why-card\" value=\"{}\" required></label>\
         <label>Door<select name=\"door\" id=\"why-door\">{}</select></label>\
         <button type=\"submit\" id=\"why-ask\">Ask</button></form>",
        escape(card),
        door_options(s, door, None)
    );
    match why {
        None => {}
        Some(WhyView::Error { message, .. }) => {
            let _ = write!(
                h,
                "<div class=\"answer deny\" id=\"why-answer\"><span class=\"bad\">Cannot tell:</span> {}</div>",
                escape(message)
            );
        }
        Some(WhyView::Answer { door, answer, .. }) => {
            let who = match (&answer.name, &answer.credential) {
                (Some(n), Some(c)) => format!("{n} ({c})"),
                (None, Some(c)) => c.clone(),
                _ => "this card".to_owned(),
            };
            let mut rules = answer
                .rules_version
                .map_or_else(|| "no rules in force".to_owned(), |v| format!("rules v{v}"));
            // Which day's intervals applied: a special day or a holiday.
            if let Some(t) = &answer.day_type {
                rules.push_str(&format!(", day type {t}"));
                if let Some(n) = &answer.day_name {
                    rules.push_str(&format!(" ({n})"));
                }
            }
            if answer.decision == WhyDecision::Grant {
                let _ = write!(
                    h,
                    "<div class=\"answer grant\" id=\"why-answer\"><span class=\"ok\">GRANT</span>: {} at {} would be let in now ({}).</div>",
                    escape(&who),
                    escape(door),
                    escape(&rules)
                );
            } else {
                let (code, words) = answer
                    .reason
                    .map_or(("unknown", "unknown"), |r| (r.as_str(), r.words()));
                let words = answer.detail.as_deref().unwrap_or(words);
                let _ = write!(
                    h,
                    "<div class=\"answer deny\" id=\"why-answer\"><span class=\"bad\">DENY</span>: {} at {}: <strong>{}</strong> <span class=\"mute\">({}, {})</span></div>",
                    escape(&who),
                    escape(door),
                    escape(words),
                    escape(code),
                    escape(&rules)
                );
            }
        }
    }
    h.push_str("</section>");
}

fn actions(h: &mut String, s: &Status) {
    let all = door_options(s, "", None);
    let revolving = door_options(s, "", Some(DoorKindName::Revolving));
    let _ = write!(
        h,
        "<section id=\"actions\"><h2>Door actions</h2>\
         <p class=\"mute\">Each action asks for confirmation, acts on the real door, and is recorded with your name.</p>\
         <form method=\"get\" action=\"/confirm\" class=\"inline\"><input type=\"hidden\" name=\"action\" value=\"unlock\">\
         <label>Door<select name=\"door\" id=\"unlock-door\">{all}</select></label>\
         <label>Seconds<input name=\"seconds\" type=\"number\" min=\"1\" max=\"300\" value=\"5\"></label>\
         <button type=\"submit\" id=\"unlock\">Unlock momentarily…</button></form>\
         <form method=\"get\" action=\"/confirm\" class=\"inline\"><input type=\"hidden\" name=\"action\" value=\"override\">\
         <label>Door<select name=\"door\">{all}</select></label>\
         <label>State<select name=\"state\"><option value=\"unlocked\">unlocked</option><option value=\"locked\">locked</option></select></label>\
         <label>Minutes<input name=\"minutes\" type=\"number\" min=\"1\" max=\"1440\" value=\"30\"></label>\
         <button type=\"submit\">Override mode…</button></form>"
    );
    if !revolving.is_empty() {
        let _ = write!(
            h,
            "<form method=\"get\" action=\"/confirm\" class=\"inline\"><input type=\"hidden\" name=\"action\" value=\"release\">\
             <label>Revolving door<select name=\"door\">{revolving}</select></label>\
             <label>Direction<select name=\"direction\"><option value=\"in\">in</option><option value=\"out\">out</option></select></label>\
             <button type=\"submit\">Release one passage…</button></form>"
        );
    }
    h.push_str("</section>");
}

/// The whole status page.
/// For an operator, while the time is not confirmed: the gateway's clock
/// and a form to vouch for it (journaled with their name).
fn confirm_time(h: &mut String, s: &Status, v: &Viewer) {
    if s.gateway.time.confirmed {
        return;
    }
    let _ = write!(
        h,
        "<section id=\"confirm-time\"><h2>Time not confirmed</h2>\
         <p>The gateway's clock says <strong>{}</strong>. Scheduled unlocks wait until central's \
         signed time confirms it. If it is right (check a trusted clock), you may confirm it: \
         this is recorded as an event with your name.</p>\
         <form method=\"post\" action=\"/time/confirm\" class=\"inline\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\" id=\"confirm-time-button\">The clock is right</button></form></section>",
        escape(&when(&tz_of(s), s.gateway.now)),
        escape(&v.csrf),
    );
}

pub(crate) fn index(s: &Status, v: &Viewer, why: Option<&WhyView>) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<p><span id=\"refreshed\">not refreshing by itself: <a href=\"/\">reload</a></span></p>\
         <div id=\"live\" data-refresh-ms=\"5000\">{}</div>",
        live(s)
    );
    why_box(&mut b, s, why);
    if v.operator {
        confirm_time(&mut b, s, v);
        actions(&mut b, s);
    }
    let title = format!("Portier · {} · {}", s.gateway.building, s.gateway.id);
    shell(&title, Some(v), &b, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(percent_path("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn csp_hashes_the_inline_code() {
        assert!(csp().contains(&sha256_b64(SCRIPT)));
        assert!(csp().contains(&sha256_b64(STYLE)));
    }
}
