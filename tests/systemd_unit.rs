//! The systemd units (`portier.service`, the gateway; `portier-central.service`,
//! central): `systemd-analyze verify` is clean, restarts never give up, and
//! the security exposure stays at or below 2.0 (printed for each). `systemd-analyze` comes with Debian's
//! `systemd` package, which `scripts/test` installs; under CI a missing tool
//! is a failure, elsewhere the test says why it did not run.

mod support;

use std::process::Command;

fn analyze_available() -> bool {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze missing under CI: scripts/test installs systemd"
        );
        eprintln!("systemd-analyze not installed; skipping (scripts/test installs it)");
    }
    found
}

/// Both units of the package.
const UNITS: [&str; 2] = ["portier.service", "portier-central.service"];

/// The unit with ExecStart* pointing at the binary under test (verify
/// checks that the executables exist).
fn unit_under_test(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(support::repo().join("systemd").join(name)).unwrap();
    let bin = support::portier_bin();
    let text = text.replace("/usr/bin/portier", bin.to_str().unwrap());
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_unit_verifies_cleanly() {
    if !analyze_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in UNITS {
        let unit = unit_under_test(dir.path(), name);
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&unit)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Outside a booted systemd, verify also reports on the host's units;
        // only lines about ours count.
        let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(name)).collect();
        assert!(ours.is_empty() && out.status.success(), "{name}: {stderr}");
    }
}

/// The restart policy never gives up and memory is capped (reasons in
/// systemd/README.md). Read from the file: `systemd-analyze verify` above
/// checks that systemd accepts it in these sections.
#[test]
fn restarts_never_give_up_and_memory_is_capped() {
    for name in UNITS {
        restarts_never_give_up_and_memory_is_capped_in(name);
    }
}

fn restarts_never_give_up_and_memory_is_capped_in(name: &str) {
    let text = std::fs::read_to_string(support::repo().join("systemd").join(name)).unwrap();
    let section = |name: &str| -> Vec<String> {
        text.split("\n[")
            .find(|s| s.starts_with(name) || s.starts_with(&format!("[{name}")))
            .unwrap_or_else(|| panic!("no [{name}]"))
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    let unit = section("Unit]");
    let service = section("Service]");
    assert!(
        unit.iter().any(|l| l == "StartLimitIntervalSec=0"),
        "{unit:?}"
    );
    assert!(service.iter().any(|l| l == "Restart=always"), "{name}");
    assert!(service.iter().any(|l| l == "Type=notify"), "{name}");
    assert!(
        service.iter().any(|l| l.starts_with("WatchdogSec=")),
        "{name}"
    );
    assert!(service.iter().any(|l| l.starts_with("RestartSec=")));
    assert!(
        !service.iter().any(|l| l.starts_with("StartLimit")),
        "start limits belong in [Unit]"
    );
    let max = service
        .iter()
        .find_map(|l| l.strip_prefix("MemoryMax="))
        .expect("MemoryMax=");
    let mb: u64 = max.trim_end_matches('M').parse().unwrap();
    assert!((64..=1024).contains(&mb), "MemoryMax={max}");
}

#[test]
fn the_security_exposure_is_at_most_2_0() {
    if !analyze_available() {
        return;
    }
    for name in UNITS {
        exposure_is_at_most_2_0(name);
    }
}

fn exposure_is_at_most_2_0(name: &str) {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(support::repo().join("systemd").join(name))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure line in:\n{stdout}"));
    let level: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"));
    println!("{line}");
    assert!(level <= 2.0, "{line}");
}
