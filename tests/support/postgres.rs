//! A real PostgreSQL for tests: `initdb` into a temp dir, `postgres`
//! listening on a unix socket in that dir only (no TCP), trust auth.
//! PostgreSQL refuses to run as root; as root (CI) the cluster is owned by
//! and run as the `postgres` system user (Debian's package creates it; else
//! `nobody`), started through `setpriv`, which execs in place so the test
//! keeps the postmaster's pid.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    user: Option<String>,
    /// Also listening on 127.0.0.1 at this port (`start_tcp`, `start_tls`).
    pub tcp_port: Option<u16>,
    extra: Vec<String>,
}

/// How a TCP listener takes clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpAuth {
    /// Plain TCP, no TLS offered (`ssl = off`), trust.
    Plain,
    /// TLS only (`hostssl … trust`; plain TCP rejected).
    Tls,
    /// TLS only, and the client's certificate is the login: its CN names
    /// the role (`hostssl … cert`).
    TlsClientCert,
}

/// A PostgreSQL program (`psql`, `initdb`, …) of the newest installed server.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("PORTIER_PG_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            let mut v: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|p| p.join("initdb").exists())
                .collect();
            v.sort();
            v.pop()
        })
        .expect("PostgreSQL server binaries (apt-get install postgresql; or set PORTIER_PG_BIN)");
    dir.join(name)
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Postgres {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Also on 127.0.0.1 (a free port), plain, no TLS.
    pub fn start_tcp() -> Self {
        Self::start_with(Some((TcpAuth::Plain, None)))
    }

    /// Also on 127.0.0.1 (a free port) with TLS only: the server
    /// certificate `pki/broker.crt` (`scripts/dev-pki`: SAN localhost and
    /// 127.0.0.1), client certificates checked against `pki/ca.crt`.
    pub fn start_tls(pki: &Path, auth: TcpAuth) -> Self {
        Self::start_with(Some((auth, Some(pki))))
    }

    fn start_with(tcp: Option<(TcpAuth, Option<&Path>)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("portier-pg")
            .tempdir()
            .unwrap();
        let user = is_root().then(|| {
            let u = if user_exists("postgres") {
                "postgres"
            } else {
                "nobody"
            };
            let s = Command::new("chown")
                .arg(format!("{u}:"))
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(s.success(), "chown {u} {}", dir.path().display());
            u.to_owned()
        });
        let mut pg = Self {
            dir,
            child: None,
            user,
            tcp_port: None,
            extra: Vec::new(),
        };
        let data = pg.data();
        let out = pg
            .command(&bin("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some((auth, pki)) = tcp {
            pg.listen_tcp(auth, pki);
        }
        pg.run();
        pg
    }

    fn listen_tcp(&mut self, auth: TcpAuth, pki: Option<&Path>) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        self.tcp_port = Some(port);
        let data = self.data();
        let line = match auth {
            TcpAuth::Plain => "host all all 127.0.0.1/32 trust",
            TcpAuth::Tls => "hostssl all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 reject",
            TcpAuth::TlsClientCert => {
                "hostssl all all 127.0.0.1/32 cert\nhost all all 127.0.0.1/32 reject"
            }
        };
        std::fs::write(
            data.join("pg_hba.conf"),
            format!("local all all trust\n{line}\n"),
        )
        .unwrap();
        self.extra = vec![
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            format!("port={port}"),
        ];
        if let Some(pki) = pki {
            // The server's own copies: PostgreSQL wants its key private
            // and owned by the cluster's user.
            for (from, to) in [
                ("broker.crt", "server.crt"),
                ("broker.key", "server.key"),
                ("ca.crt", "ca.crt"),
            ] {
                let dest = data.join(to);
                std::fs::copy(pki.join(from), &dest).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).unwrap();
                if let Some(u) = &self.user {
                    let _ = Command::new("chown")
                        .arg(format!("{u}:"))
                        .arg(&dest)
                        .status();
                }
            }
            for setting in [
                "ssl=on".to_owned(),
                format!("ssl_cert_file={}", data.join("server.crt").display()),
                format!("ssl_key_file={}", data.join("server.key").display()),
                format!("ssl_ca_file={}", data.join("ca.crt").display()),
            ] {
                self.extra.push("-c".into());
                self.extra.push(setting);
            }
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command run as the cluster's user.
    fn command(&self, program: &Path) -> Command {
        match &self.user {
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={u}"),
                    &format!("--regid={u}"),
                    "--init-groups",
                    "--",
                ])
                .arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    fn run(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).unwrap();
        if let Some(u) = &self.user {
            let _ = Command::new("chown")
                .arg(format!("{u}:"))
                .arg(self.dir.path().join("postgres.log"))
                .status();
        }
        let child = self
            .command(&bin("postgres"))
            .arg("-D")
            .arg(self.data())
            .args(["-c", "listen_addresses="])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "max_connections=50", "-c", "shared_buffers=64MB"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres");
        self.child = Some(child);
        let socket = self.dir.path().join(format!(".s.PGSQL.{}", self.port()));
        let end = Instant::now() + Duration::from_secs(30);
        while !self.ready(&socket) {
            assert!(
                Instant::now() < end,
                "postgres did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ready(&self, socket: &Path) -> bool {
        socket.exists()
            && std::os::unix::net::UnixStream::connect(socket).is_ok()
            && self.psql_raw("SELECT 1").is_some_and(|o| o.trim() == "1")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// The server's port (the unix socket is named after it too).
    pub fn port(&self) -> u16 {
        self.tcp_port.unwrap_or(5432)
    }

    /// The `[postgres] connect` string (the unix socket).
    pub fn connect(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.path().display(),
            self.port()
        )
    }

    fn psql_raw(&self, sql: &str) -> Option<String> {
        let out = Command::new(bin("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args(["-p", &self.port().to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-c", sql])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Run SQL with psql; the unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_raw(sql)
            .unwrap_or_else(|| panic!("psql failed: {sql}\n{}", self.log()))
            .trim()
            .to_owned()
    }

    /// A single number.
    pub fn count(&self, sql: &str) -> i64 {
        self.psql(sql).parse().unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGINT: PostgreSQL's fast shutdown (backends end too).
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
