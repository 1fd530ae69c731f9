//! Text from outside, made safe to keep: every string that enters an event
//! (a login name, a door id from a URL, a command id, a decoder's
//! complaint) is capped in bytes and has its control characters escaped
//! before it is journaled, logged or sent. Sans-IO.
//!
//! Why here and not at each entry point: an entry point that forgets its
//! cap must not be able to flood the journal or wedge delivery, so
//! [`crate::journal::Journal::commit`] bounds every event it writes
//! (`EventKind::bounded`); entry points cap early as well, so that nothing
//! larger is held in memory meanwhile.
//!
//! Escaping: C0 and C1 control characters, DEL and the Unicode
//! bidirectional overrides are written as `\u{…}` (six or more visible
//! characters), so a NUL cannot break PostgreSQL's `jsonb`, an escape
//! sequence cannot repaint a terminal and an override cannot reorder what
//! the admin page shows. Truncation keeps whole characters and ends in `…`.

use std::borrow::Cow;
use std::fmt::Write;

/// Cap for names people type or configure: admin user names, client
/// addresses, token names (bytes).
pub const NAME: usize = 64;
/// Cap for identifiers: door, reader and bus ids, command ids, key ids,
/// MQTT topics, software versions (bytes).
pub const ID: usize = 128;
/// Cap for free text: reasons, decoder complaints, actions and outcomes,
/// credential keys, file paths (bytes).
pub const TEXT: usize = 512;

/// What marks a cut.
const ELLIPSIS: &str = "…";

/// `s` with control characters escaped and cut to at most `cap` bytes
/// (whole characters, `…` at the end when cut; `cap` is one of this
/// module's caps, all well above the ellipsis' 3 bytes). Borrowed when nothing
/// needed changing, which is the common case.
pub fn bounded(s: &str, cap: usize) -> Cow<'_, str> {
    if s.len() <= cap && !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(cap));
    // Room for the ellipsis is kept from the start: a cut string must end
    // in it and still fit.
    let room = cap.saturating_sub(ELLIPSIS.len());
    let mut escaped = String::new();
    let mut cut = false;
    for c in s.chars() {
        escaped.clear();
        if needs_escape(c) {
            let _ = write!(escaped, "\\u{{{:x}}}", u32::from(c));
        } else {
            escaped.push(c);
        }
        if out.len() + escaped.len() > room {
            cut = true;
            break;
        }
        out.push_str(&escaped);
    }
    if cut {
        // The rest might still have fitted without the ellipsis; it is
        // simpler and honest to say it was cut.
        out.push_str(ELLIPSIS);
    }
    Cow::Owned(out)
}

/// `bounded` into an owned `String`, for fields that own their text.
pub fn bounded_owned(s: String, cap: usize) -> String {
    match bounded(&s, cap) {
        Cow::Borrowed(_) => s,
        Cow::Owned(o) => o,
    }
}

/// Characters written as `\u{…}` rather than kept.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_kept_as_it_is() {
        assert!(matches!(bounded("side-entrance", ID), Cow::Borrowed(_)));
        assert_eq!(bounded("Ærø 😀", NAME), "Ærø 😀");
    }

    #[test]
    fn controls_and_overrides_are_escaped() {
        assert_eq!(bounded("a\0b", NAME), "a\\u{0}b");
        assert_eq!(bounded("\u{1b}[31mred", NAME), "\\u{1b}[31mred");
        assert_eq!(bounded("x\u{202e}y", NAME), "x\\u{202e}y");
        assert_eq!(bounded("tab\there\n", NAME), "tab\\u{9}here\\u{a}");
    }

    #[test]
    fn long_text_is_cut_on_a_character_with_an_ellipsis() {
        let long = "é".repeat(1000);
        let b = bounded(&long, NAME);
        assert!(b.len() <= NAME, "{}", b.len());
        assert!(b.ends_with('…'));
        assert!(b.trim_end_matches('…').chars().all(|c| c == 'é'));
        let nuls = "\0".repeat(1 << 20);
        let b = bounded(&nuls, TEXT);
        assert!(b.len() <= TEXT && b.ends_with('…') && !b.contains('\0'));
    }

    proptest::proptest! {
        #[test]
        fn never_over_the_cap_never_a_control(s in ".{0,300}", cap in 4usize..200) {
            let b = bounded(&s, cap);
            proptest::prop_assert!(b.len() <= cap);
            proptest::prop_assert!(!b.chars().any(needs_escape));
            if s.len() <= cap && !s.chars().any(needs_escape) {
                proptest::prop_assert_eq!(b.as_ref(), s.as_str());
            }
        }
    }
}
