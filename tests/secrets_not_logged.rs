//! No secret is ever logged: the demo (readers installed with fresh SC
//! keys, rules signed with a fresh central key) runs at `RUST_LOG=trace`,
//! and neither its output nor its logs contain any of those keys.

mod support;

#[test]
fn a_trace_level_demo_run_logs_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = support::run_demo(dir.path(), &[("RUST_LOG", "trace")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The demo's one-time admin password is shown once, to the person who
    // started it (standard output), and never logged.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let password = stdout
        .split("login demo / ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the demo prints its admin login");
    assert_eq!(stdout.matches(password).count(), 1);
    assert!(!stderr.contains(password), "the admin password was logged");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .to_lowercase();
    assert!(
        all.len() > 10_000,
        "a trace run says a lot; got {} bytes",
        all.len()
    );
    let mut secrets = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".scbk") || name.ends_with(".key") {
            secrets.push((
                name,
                std::fs::read_to_string(&path)
                    .unwrap()
                    .trim()
                    .to_lowercase(),
            ));
        }
    }
    assert_eq!(
        secrets.len(),
        4,
        "three reader keys and the central key: {secrets:?}"
    );
    for (name, secret) in secrets {
        // Any 8-byte window of the key would be a leak, not only the whole.
        for window in secret.as_bytes().chunks(16) {
            let part = std::str::from_utf8(window).unwrap();
            assert!(
                !all.contains(part),
                "{name}: part of the key appears in the logs"
            );
        }
    }
}

/// A key rotation at trace level with a bus capture: neither the old nor
/// the new key appears in the tool's output, its logs, or the capture
/// (the KEYSET frame and the PD's answer to it are left out of it).
#[test]
fn a_key_rotation_logs_and_captures_no_key() {
    const OLD: &str = "5C0FFEE5C0FFEE5C0FFEE5C0FFEE5C0F";
    let pty = support::PtyPair::new();
    let script = support::repo().join("tests/interop/libosdp_pd.py");
    let mut pd = support::JsonChild::spawn(
        &support::python(),
        &[
            script.to_str().unwrap(),
            "--device",
            pty.a.to_str().unwrap(),
            "--baud",
            "115200",
            "--pd",
            &format!("1,scbk={OLD}"),
        ],
    );
    pd.expect(std::time::Duration::from_secs(15), "libosdp ready", |v| {
        v["event"] == "ready"
    });
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("reader.scbk");
    std::fs::write(&key_file, OLD).unwrap();
    let capture = dir.path().join("bus.pcap");
    let out = std::process::Command::new(support::portier_bin())
        .args(["reader", "rotate-key", "--port", pty.b.to_str().unwrap()])
        .args(["--address", "1", "--baud", "115200"])
        .args(["--key-file", key_file.to_str().unwrap()])
        .args(["--capture", capture.to_str().unwrap()])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .to_lowercase();
    assert!(out.status.success(), "{all}");
    let new = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_lowercase();
    assert_ne!(new, OLD.to_lowercase());
    let captured = std::fs::read(&capture).unwrap();
    assert!(captured.len() > 200, "the capture holds the session");
    for key in [OLD.to_lowercase(), new] {
        for window in key.as_bytes().chunks(16) {
            let part = std::str::from_utf8(window).unwrap();
            assert!(!all.contains(part), "part of a key in the output or logs");
        }
        let raw = hex::decode(&key).unwrap();
        assert!(
            !captured.windows(8).any(|w| raw.windows(8).any(|k| k == w)),
            "key bytes in the capture"
        );
    }
}
