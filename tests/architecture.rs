//! The sans-IO cores stay pure: nothing under `src/osdp`, `src/rules`,
//! `src/door` or `src/site` (nor the `event` and `ids` modules they share)
//! imports tokio, sled, rumqttc, axum or a driver, touches the file system
//! or the network, or reads a clock. Checked on the source text, comments
//! left out, so a new import fails here before it becomes a habit.

use std::path::{Path, PathBuf};

const CORES: &[&str] = &[
    "src/osdp",
    "src/rules",
    "src/door",
    "src/site",
    "src/event.rs",
    "src/ids.rs",
];

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
fn the_checker_sees_a_forbidden_name() {
    assert!(names("use tokio::sync::mpsc;", "tokio"));
    assert!(!names("let tokio_like = 1;", "tokio"));
    assert!(names("let t = std::time::Instant::now();", "Instant::now"));
    assert_eq!(code_of("let x = 1; // tokio"), "let x = 1; ");
}
