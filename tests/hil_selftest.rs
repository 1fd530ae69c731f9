//! `hil/run --simulate`: the hardware-in-the-loop script itself, with
//! Portier's PD simulator answering its prompts over a socat PTY pair, so
//! the procedure a technician runs is known to work before the ladder.

mod support;

use std::process::Command;

#[test]
fn the_hil_script_passes_against_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results.md");
    let out = Command::new("python3")
        .arg(support::repo().join("hil/run"))
        .args(["--simulate", "--results"])
        .arg(&results)
        .env("PORTIER_BIN", support::portier_bin())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read_to_string(&results).unwrap();
    assert_eq!(report.matches("| PASS |").count(), 6, "{report}");
    assert!(!report.contains("FAIL"));
}
