//! The layering rules ARCHITECTURE.md states, checked on the source text
//! (comments and unit-test modules left out), so a new import fails here
//! before it becomes a habit:
//! - the sans-IO cores (`src/osdp`, `src/rules`, `src/door`, `src/site`,
//!   and the `action`, `event` and `ids` modules they share) import no
//!   tokio, sled, rumqttc, axum or driver, touch no file or network, and
//!   read no clock;
//! - the clock and OS entropy are read in one place, `src/clock.rs`;
//! - the top-level modules form floors: each imports only from floors
//!   below it, so there are no cycles and no back-edges (`central` imports
//!   no `driver`);
//! - library errors are types: no `Result<_, String>` outside `src/cli/`,
//!   and `anyhow` only in `src/main.rs` and `src/cli/`;
//! - events are imported from `event`, never through the journal.

use std::path::{Path, PathBuf};

const CORES: &[&str] = &[
    "src/osdp",
    "src/rules",
    "src/door",
    "src/site",
    "src/action.rs",
    "src/event.rs",
    "src/ids.rs",
    "src/upkeep",
];

/// The floors of the crate, lowest first: a module may import from its own
/// folder and from lower floors only. Modules on one floor do not import
/// each other.
const FLOORS: &[&[&str]] = &[
    &[
        "ids",
        "text",
        "clock",
        "storage",
        "secret_files",
        "test_clock",
    ],
    &["rules", "osdp"],
    &["door"],
    &["action"],
    &["event"],
    &["site", "journal"],
    &["command", "store", "status", "upkeep"],
    &["uplink"],
    &["admin", "mqtt"],
    &["config"],
    &["driver"],
    &["central"],
    &["cli", "main", "lib"],
];

/// Imports that the floors would allow but the design does not: central
/// is a program of its own beside the gateway, sharing the wire types and
/// the MQTT options, never the gateway's drivers.
const APART: &[(&str, &str)] = &[("central", "driver")];

/// What a core must not name, and why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("tokio", "async runtime"),
    ("sled", "storage"),
    ("rumqttc", "MQTT"),
    ("axum", "HTTP"),
    ("tokio_serial", "serial ports"),
    ("crate::driver", "a driver"),
    (
        "crate::journal",
        "the sled journal (events live in crate::event)",
    ),
    ("crate::store", "the sled rules store"),
    ("crate::admin", "the admin port"),
    ("crate::storage", "sled"),
    ("std::fs", "the file system"),
    ("std::net", "the network"),
    ("Instant::now", "the monotonic clock"),
    ("SystemTime::now", "the wall clock"),
    ("Timestamp::now", "the wall clock"),
    ("Zoned::now", "the wall clock"),
    ("getrandom", "OS entropy"),
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        out.push(path.to_owned());
        return;
    }
    for entry in std::fs::read_dir(path).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every library and binary source file with its code lines (comments
/// dropped, the trailing unit-test module and `tests.rs` files left out),
/// as (path from the root, line number, code).
fn source_lines() -> Vec<(String, usize, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut out = Vec::new();
    for file in files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let rel = file.strip_prefix(root).unwrap().display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let mut lines = text.lines().enumerate().peekable();
        while let Some((n, line)) = lines.next() {
            let unit_tests = line.trim() == "#[cfg(test)]"
                && lines
                    .peek()
                    .is_some_and(|(_, next)| next.trim_start().starts_with("mod "));
            if unit_tests {
                break;
            }
            out.push((rel.clone(), n + 1, code_of(line).to_owned()));
        }
    }
    out
}

/// The top-level module a source file belongs to (`src/site/gateway.rs`
/// → `site`, `src/event.rs` → `event`).
fn module_of(path: &str) -> &str {
    let rest = path.strip_prefix("src/").unwrap_or(path);
    let first = rest.split('/').next().unwrap_or(rest);
    first.strip_suffix(".rs").unwrap_or(first)
}

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

/// The crate modules a line names (`crate::x`, `portier::x`, and
/// `crate::{x::…, y::…}`).
fn crate_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["crate::", "portier::"] {
        for (i, _) in code.match_indices(prefix) {
            if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[i + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.push(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
        }
    }
    out
}

/// Whether a line declares a `Result` whose error type is `String`
/// (generic arguments parsed, so `Result<Vec<String>, E>` is fine).
fn string_error(code: &str) -> bool {
    code.match_indices("Result<").any(|(i, _)| {
        if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            return false;
        }
        let args = &code[i + "Result<".len()..];
        let mut depth = 0usize;
        let mut last_top_comma = None;
        for (j, c) in args.char_indices() {
            match c {
                '<' | '(' | '[' => depth += 1,
                ')' | ']' => depth = depth.saturating_sub(1),
                '>' if depth == 0 => {
                    return last_top_comma
                        .is_some_and(|k: usize| args[k + 1..j].trim() == "String");
                }
                '>' => depth -= 1,
                ',' if depth == 0 => last_top_comma = Some(j),
                _ => {}
            }
        }
        false
    })
}

/// A line as code: without its `//` comment. (String literals containing
/// `//` are rare in the cores; a false alarm here would be a nuisance,
/// never a miss.)
fn code_of(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

fn names(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = code[i + name.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

#[test]
fn sans_io_cores_import_no_io_and_read_no_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for core in CORES {
        rust_files(&root.join(core), &mut files);
    }
    assert!(files.len() > 20, "the cores were not found: {files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = code_of(line);
            for (name, what) in FORBIDDEN {
                if names(code, name) {
                    found.push(format!(
                        "{}:{}: {name} ({what}): {}",
                        file.strip_prefix(root).unwrap().display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "sans-IO cores reach for I/O:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_clock_is_read_in_one_place() {
    let reads = [
        "Instant::now",
        "SystemTime::now",
        "Timestamp::now",
        "Zoned::now",
        "getrandom",
    ];
    let found: Vec<String> = source_lines()
        .into_iter()
        .filter(|(path, _, _)| path != "src/clock.rs" && path != "src/test_clock.rs")
        .filter(|(_, _, code)| {
            // `Instant::elapsed` reads the clock as well.
            reads.iter().any(|r| names(code, r)) || code.contains(".elapsed()")
        })
        .map(|(path, n, code)| format!("{path}:{n}: {}", code.trim()))
        .collect();
    assert!(
        found.is_empty(),
        "a clock or entropy read outside src/clock.rs (call crate::clock):\n{}",
        found.join("\n")
    );
}

#[test]
fn modules_import_only_from_lower_floors() {
    let mut found = Vec::new();
    let mut seen_modules = std::collections::BTreeSet::new();
    for (path, n, code) in source_lines() {
        let from = module_of(&path);
        seen_modules.insert(from.to_owned());
        let Some(own) = floor_of(from) else {
            found.push(format!("{path}: module {from} is on no floor of FLOORS"));
            continue;
        };
        for to in crate_modules(&code) {
            if to == from || to == "self" || to == "super" {
                continue;
            }
            if APART.contains(&(from, to.as_str())) {
                found.push(format!(
                    "{path}:{n}: {from} must not import {to}: {}",
                    code.trim()
                ));
                continue;
            }
            match floor_of(&to) {
                Some(f) if f < own => {}
                Some(_) => found.push(format!(
                    "{path}:{n}: {from} imports {to}, which is not below it: {}",
                    code.trim()
                )),
                None => {}
            }
        }
    }
    assert!(seen_modules.len() > 20, "the modules were not found");
    assert!(
        found.is_empty(),
        "imports that climb (or stay on one floor):\n{}",
        found.join("\n")
    );
}

#[test]
fn library_errors_are_types_and_anyhow_stays_at_the_top() {
    let mut found = Vec::new();
    for (path, n, code) in source_lines() {
        let top = path == "src/main.rs" || path.starts_with("src/cli/");
        if !top && string_error(&code) {
            found.push(format!("{path}:{n}: a String error: {}", code.trim()));
        }
        if !top && names(&code, "anyhow") {
            found.push(format!(
                "{path}:{n}: anyhow in library code: {}",
                code.trim()
            ));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn events_come_from_event_not_through_the_journal() {
    let found: Vec<String> = source_lines()
        .into_iter()
        .filter(|(path, _, _)| !path.starts_with("src/journal/"))
        .filter(|(_, _, code)| {
            code.match_indices("journal::").any(|(i, _)| {
                let rest = &code[i + "journal::".len()..];
                let group = rest
                    .strip_prefix('{')
                    .map_or(rest, |g| &g[..g.find('}').unwrap_or(g.len())]);
                names(group, "Event") || names(group, "EventKind")
            })
        })
        .map(|(path, n, code)| format!("{path}:{n}: {}", code.trim()))
        .collect();
    assert!(
        found.is_empty(),
        "import events from crate::event:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checkers_see_what_they_look_for() {
    assert!(string_error("pub fn f() -> Result<(), String> {"));
    assert!(string_error(
        "fn g(x: u8) -> Result<Vec<(u8, u8)>, String>;"
    ));
    assert!(!string_error("fn h() -> Result<Vec<String>, Error> {"));
    assert!(!string_error("fn i() -> io::Result<String> {"));
    assert_eq!(
        crate_modules("use crate::{door::Mode, ids::DoorId};"),
        ["door", "ids"]
    );
    assert_eq!(crate_modules("let x = crate::site::clock::now;"), ["site"]);
    assert_eq!(module_of("src/site/gateway.rs"), "site");
    assert_eq!(module_of("src/event.rs"), "event");
    assert!(floor_of("door") < floor_of("site"));
}

#[test]
fn the_checker_sees_a_forbidden_name() {
    assert!(names("use tokio::sync::mpsc;", "tokio"));
    assert!(!names("let tokio_like = 1;", "tokio"));
    assert!(names("let t = std::time::Instant::now();", "Instant::now"));
    assert_eq!(code_of("let x = 1; // tokio"), "let x = 1; ");
}

/// The assembly reads in one screen: `portier run` is named steps.
#[test]
fn the_assembly_function_stays_short() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("src/driver/gateway.rs")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("pub async fn run("))
        .expect("driver::gateway::run");
    let length = lines[start..]
        .iter()
        .position(|l| *l == "}")
        .expect("the end of run")
        + 1;
    assert!(length < 80, "driver::gateway::run is {length} lines");
}
