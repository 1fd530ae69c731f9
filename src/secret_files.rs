//! Files that hold secrets or must be readable by the service user: what to
//! tell a technician when they cannot be read, and a warning when others can.
//! Shared by the config and the admin port (so neither imports the other for
//! it).

use std::path::Path;

/// What to do about a file the service cannot read, for error messages.
pub fn read_hint(path: &Path, kind: std::io::ErrorKind) -> String {
    match kind {
        std::io::ErrorKind::PermissionDenied => format!(
            "the service user cannot read it; fix: chgrp portier {p}; chmod 0640 {p}",
            p = path.display()
        ),
        std::io::ErrorKind::IsADirectory => {
            "a directory where a file is expected; point the config at the file".into()
        }
        std::io::ErrorKind::NotFound => "does not exist; check the path".into(),
        _ => "cannot be read".into(),
    }
}

/// An I/O error reading `path`, with what to do about it.
pub fn unreadable_fix(path: &Path, e: &std::io::Error) -> String {
    format!("{e}: {}", read_hint(path, e.kind()))
}

/// Warn about a secret file that others may read (the fix in the message).
/// A warning, not an error: refusing to start would lock every door's
/// reader out over a permission bit.
pub fn warn_if_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o007 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", m.permissions().mode() & 0o777),
            "secret file readable by every user; fix: chmod 0640 {}",
            path.display()
        );
    }
}
