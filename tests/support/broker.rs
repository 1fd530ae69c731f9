//! A real Mosquitto for tests: certificates and config from
//! `scripts/dev-pki` (made at test time), a free loopback port,
//! `require_certificate true`, per-gateway ACLs; and a "central" MQTT
//! client (the central certificate) that collects event batches and acks.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portier::uplink::wire::{Ack, EventBatch};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS, TlsConfiguration, Transport};

use super::{portier_bin, repo};

pub struct Broker {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    /// Certificates for `gateways` and a broker that requires them.
    pub fn start(gateways: &[&str]) -> Self {
        Self::start_with(gateways, false)
    }

    /// A broker that keeps sessions and subscriptions on disk (saved every
    /// second) and restores them after [`Broker::restart`], as a
    /// production broker with persistence does: a persistent subscriber
    /// then misses nothing published while it reconnects.
    pub fn start_persistent(gateways: &[&str]) -> Self {
        Self::start_with(gateways, true)
    }

    fn start_with(gateways: &[&str], persistent: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let out = Command::new(repo().join("scripts/dev-pki"))
            .arg(dir.path())
            .args([
                "--gateways",
                &gateways.join(","),
                "--port",
                &port.to_string(),
            ])
            .env("PORTIER_BIN", portier_bin())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dev-pki: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Running as root (CI), Mosquitto would drop to its own user, which
        // cannot read these 0600 files: stay as the test's user.
        let conf = dir.path().join("mosquitto.conf");
        let text = std::fs::read_to_string(&conf).unwrap().replace(
            &format!("listener {port}\n"),
            &format!("listener {port} 127.0.0.1\n"),
        );
        assert!(text.contains("127.0.0.1"), "dev-pki listener line changed");
        let text = format!("{text}user {}\n", whoami());
        let text = if persistent {
            let store = dir.path().join("store");
            std::fs::create_dir(&store).unwrap();
            text.replace(
                "persistence false\n",
                &format!(
                    "persistence true\npersistence_location {}/\nautosave_interval 1\nmax_queued_messages 0\n",
                    store.display()
                ),
            )
        } else {
            text
        };
        std::fs::write(&conf, text).unwrap();
        let mut b = Self {
            dir,
            port,
            child: None,
        };
        b.run();
        b
    }

    pub fn pki(&self) -> &Path {
        self.dir.path()
    }

    fn run(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto (installed by scripts/test)");
        self.child = Some(child);
        let port = self.port;
        let log = self.dir.path().join("mosquitto.log");
        let ok = (0..1000).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            ok,
            "mosquitto not listening on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// Mosquitto's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Wait until a [`Broker::start_persistent`] broker has saved its
    /// state (sessions, subscriptions) after this call: a restart then
    /// restores what exists now.
    #[allow(clippy::disallowed_methods)] // a file's time against the clock
    pub fn wait_saved(&self) {
        let db = self.dir.path().join("store/mosquitto.db");
        let asked = std::time::SystemTime::now();
        super::wait_for(
            Duration::from_secs(10),
            "the broker saved its state",
            || {
                std::fs::metadata(&db)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t > asked)
            },
        );
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// The `[uplink]` section for `gateway`.
    pub fn uplink_section(&self, gateway: &str) -> String {
        let p = |f: &str| self.pki().join(f).display().to_string();
        format!(
            "[uplink]\nhost = \"localhost\"\nport = {}\nca = {:?}\ncert = {:?}\nkey = {:?}\nbatch = 200\nstatus_interval_seconds = 1\nresend_after_seconds = 2\n",
            self.port,
            p("ca.crt"),
            p(&format!("{gateway}.crt")),
            p(&format!("{gateway}.key"))
        )
    }

    /// MQTT options over mTLS with this PKI's `name.crt`/`name.key`.
    pub fn options(&self, client_id: &str, name: &str) -> MqttOptions {
        let cfg = portier::uplink::UplinkConfig {
            host: "localhost".into(),
            port: self.port,
            ca: self.pki().join("ca.crt"),
            cert: self.pki().join(format!("{name}.crt")),
            key: self.pki().join(format!("{name}.key")),
            topic_prefix: None,
            batch: 1,
            batch_kib: 256,
            window: 1,
            max_snapshot_mib: 256,
            max_delta_kib: 1024,
            max_firmware_mib: 16,
            resend_after_seconds: 10,
            status_interval_seconds: 60,
        };
        let mut o = portier::driver::uplink::mqtt_options(&cfg, client_id, None).unwrap();
        o.set_clean_session(true);
        o
    }

    /// Options that present no client certificate at all.
    pub fn options_without_certificate(&self, client_id: &str) -> MqttOptions {
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(self.pki().join("ca.crt")).unwrap();
        for c in rustls::pki_types::pem::PemObject::pem_slice_iter(&ca) {
            roots.add(c.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut o = MqttOptions::new(client_id, "localhost", self.port);
        o.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls))));
        o
    }
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the central client saw.
#[derive(Default)]
pub struct Seen {
    /// Every event seq received, per gateway, in arrival order (duplicates kept).
    pub seqs: BTreeMap<String, Vec<u64>>,
    /// Every event received, per gateway (last copy wins).
    pub events: BTreeMap<String, BTreeMap<u64, serde_json::Value>>,
    /// Status payloads per gateway.
    pub status: BTreeMap<String, portier::uplink::wire::Status>,
    /// Payloads that did not decode.
    pub errors: Vec<String>,
    /// The largest event message received, bytes.
    pub largest: usize,
    contiguous: BTreeMap<String, u64>,
}

impl Seen {
    /// Highest seq such that every seq up to it was received.
    pub fn contiguous(&self, gateway: &str) -> u64 {
        let mut n = self.contiguous.get(gateway).copied().unwrap_or(0);
        if let Some(e) = self.events.get(gateway) {
            while e.contains_key(&(n + 1)) {
                n += 1;
            }
        }
        n
    }

    /// [`Seen::contiguous`], remembered (it only grows): central's acks
    /// cost the same at event 100 000 as at event 1.
    fn advance(&mut self, gateway: &str) -> u64 {
        let n = self.contiguous(gateway);
        self.contiguous.insert(gateway.to_owned(), n);
        n
    }
}

/// The central system's side: subscribes to every gateway's events and
/// status, stores them, and acks the contiguous prefix (when `ack`).
pub struct Central {
    pub seen: Arc<Mutex<Seen>>,
    pub client: AsyncClient,
    runtime: tokio::runtime::Runtime,
}

impl Central {
    pub fn start(broker: &Broker, ack: bool) -> Self {
        Self::start_with(broker, ack, false)
    }

    /// With a persistent session: on a [`Broker::start_persistent`] broker
    /// it misses nothing across a broker restart.
    pub fn start_persistent(broker: &Broker, ack: bool) -> Self {
        Self::start_with(broker, ack, true)
    }

    fn start_with(broker: &Broker, ack: bool, persistent: bool) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut options = broker.options("central-test", "central");
        options.set_clean_session(!persistent);
        options.set_max_packet_size(256 << 20, 256 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let store = seen.clone();
        let acker = client.clone();
        runtime.spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        for t in ["portier/v1/+/events", "portier/v1/+/status"] {
                            let _ = acker.subscribe(t, QoS::AtLeastOnce).await;
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let gateway = p.topic.split('/').nth(2).unwrap_or("").to_owned();
                        if p.topic.ends_with("/status") {
                            if let Ok(s) = serde_cbor::from_slice(&p.payload) {
                                store.lock().unwrap().status.insert(gateway, s);
                            }
                            continue;
                        }
                        let batch: EventBatch = match serde_cbor::from_slice(&p.payload) {
                            Ok(b) => b,
                            Err(e) => {
                                store
                                    .lock()
                                    .unwrap()
                                    .errors
                                    .push(format!("{}: {e}", p.topic));
                                continue;
                            }
                        };
                        let upto = {
                            let mut s = store.lock().unwrap();
                            s.largest = s.largest.max(p.payload.len());
                            for e in &batch.events {
                                s.seqs.entry(gateway.clone()).or_default().push(e.seq);
                                s.events
                                    .entry(gateway.clone())
                                    .or_default()
                                    .insert(e.seq, serde_json::to_value(e).unwrap());
                            }
                            s.advance(&gateway)
                        };
                        if ack {
                            let payload = serde_cbor::to_vec(&Ack {
                                seq: upto,
                                journal: None,
                            })
                            .unwrap();
                            let topic = format!("portier/v1/{gateway}/ack");
                            let _ = acker.publish(topic, QoS::AtLeastOnce, false, payload).await;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Self {
            seen,
            client,
            runtime,
        }
    }

    /// Publish `payload` to `topic` as central.
    pub fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        let client = self.client.clone();
        let topic = topic.to_owned();
        self.runtime.block_on(async move {
            client
                .publish(topic, QoS::AtLeastOnce, retain, payload)
                .await
                .unwrap();
        });
    }

    pub fn events(&self, gateway: &str) -> Vec<serde_json::Value> {
        self.seen
            .lock()
            .unwrap()
            .events
            .get(gateway)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// A config file for a gateway of `broker`, built from the given sections.
pub fn write_config(dir: &Path, gateway: &str, body: &str, broker: &Broker) -> PathBuf {
    let path = dir.join("portier.toml");
    std::fs::write(&path, format!("{body}\n{}", broker.uplink_section(gateway))).unwrap();
    path
}

/// A gateway uplink running in `runtime` over a journal's reader and
/// acker, and the handles a test needs. Dropping it ends the task.
pub struct TestUplink {
    pub appended: tokio::sync::watch::Sender<u64>,
    /// Snapshots, deltas and commands, acknowledged to the broker as they
    /// are received here (empty when the uplink was started `manual`).
    pub inbound: tokio::sync::mpsc::Receiver<portier::driver::uplink::Inbound>,
    /// Both lanes, unacknowledged (when started `manual`).
    pub delivered: tokio::sync::mpsc::UnboundedReceiver<portier::driver::uplink::Delivered>,
    /// Alarms the uplink asks the daemon to journal.
    pub alarms: tokio::sync::mpsc::UnboundedReceiver<portier::event::EventKind>,
    pub state: tokio::sync::watch::Receiver<portier::driver::uplink::UplinkState>,
    pub status: tokio::sync::watch::Sender<portier::uplink::wire::Status>,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

impl TestUplink {
    pub fn connected(&self) -> bool {
        self.state.borrow().connected
    }
}

/// The uplink's share of a journal.
pub type UplinkJournal = (
    portier::journal::JournalReader,
    portier::journal::JournalAcker,
);

/// Start the uplink of `gateway` (its certificate from `broker`'s PKI),
/// with `tune` applied to its config.
pub fn spawn_uplink(
    runtime: &tokio::runtime::Runtime,
    journal: UplinkJournal,
    broker: &Broker,
    gateway: &str,
    tune: impl FnOnce(&mut portier::uplink::UplinkConfig),
) -> TestUplink {
    spawn_uplink_with(
        runtime,
        journal,
        uplink_config(broker, gateway, tune),
        gateway,
        false,
    )
}

/// The uplink config of `gateway` with `tune` applied.
pub fn uplink_config(
    broker: &Broker,
    gateway: &str,
    tune: impl FnOnce(&mut portier::uplink::UplinkConfig),
) -> portier::uplink::UplinkConfig {
    let mut cfg: portier::uplink::UplinkConfig = toml::from_str(
        broker
            .uplink_section(gateway)
            .trim_start_matches("[uplink]\n"),
    )
    .unwrap();
    tune(&mut cfg);
    cfg
}

/// Start an uplink with this config. `manual`: inbound messages wait in
/// `delivered`, unacknowledged, instead of being acknowledged on receipt.
pub fn spawn_uplink_with(
    runtime: &tokio::runtime::Runtime,
    (journal, acker): UplinkJournal,
    cfg: portier::uplink::UplinkConfig,
    gateway: &str,
    manual: bool,
) -> TestUplink {
    use tokio::sync::{mpsc, watch};
    let (appended, appended_rx) = watch::channel(journal.next_seq() - 1);
    let (status_tx, status) = watch::channel(portier::uplink::wire::Status {
        gateway: gateway.into(),
        ..Default::default()
    });
    let (rules_tx, mut rules) = mpsc::unbounded_channel();
    let (commands_tx, mut commands) = mpsc::unbounded_channel();
    let (alarms_tx, alarms) = mpsc::unbounded_channel();
    let (inbound_tx, inbound) = mpsc::channel(16);
    let (delivered_tx, delivered) = mpsc::unbounded_channel();
    let (state_tx, state) = watch::channel(Default::default());
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (_urgent_tx, urgent_rx) = watch::channel(Vec::<u64>::new());
    let handles = portier::driver::uplink::UplinkHandles {
        journal,
        acker,
        appended: appended_rx,
        urgent: urgent_rx,
        status,
        rules: rules_tx,
        commands: commands_tx,
        alarms: alarms_tx,
        state: state_tx,
        shutdown,
    };
    runtime.spawn(async move {
        loop {
            let d: portier::driver::uplink::Delivered = tokio::select! {
                Some(d) = rules.recv() => d,
                Some(d) = commands.recv() => d,
                else => return,
            };
            if manual {
                let _ = delivered_tx.send(d);
            } else {
                let inbound = d.inbound.clone();
                d.done().await;
                let _ = inbound_tx.send(inbound).await;
            }
        }
    });
    runtime.spawn(portier::driver::uplink::run_uplink(
        cfg,
        gateway.into(),
        handles,
    ));
    TestUplink {
        appended,
        inbound,
        delivered,
        alarms,
        state,
        status: status_tx,
        _shutdown: shutdown_tx,
    }
}

/// Central reduced to what a drain needs, for one gateway: decode each
/// batch, check it continues the contiguous prefix, ack it. Keeps nothing
/// per event, so a bench can drain millions.
pub struct LeanCentral {
    /// The highest sequence number received with all before it.
    pub contiguous: Arc<AtomicU64>,
    /// Whether the gateway's retained status says online (it is sent after
    /// the gateway's subscriptions, so a message published now reaches it).
    pub online: Arc<std::sync::atomic::AtomicBool>,
    client: AsyncClient,
    runtime: tokio::runtime::Runtime,
}

impl LeanCentral {
    pub fn start(broker: &Broker, gateway: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let contiguous = Arc::new(AtomicU64::new(0));
        let mut options = broker.options("central-lean", "central");
        options.set_max_packet_size(256 << 20, 256 << 20);
        options.set_inflight(100);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let upto = contiguous.clone();
        let online = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen_online = online.clone();
        let gw = gateway.to_owned();
        let publisher = client.clone();
        runtime.spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        for t in ["events", "status"] {
                            let _ = client
                                .subscribe(format!("portier/v1/{gw}/{t}"), QoS::AtLeastOnce)
                                .await;
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) if p.topic.ends_with("/status") => {
                        if let Ok(s) =
                            serde_cbor::from_slice::<portier::uplink::wire::Status>(&p.payload)
                        {
                            seen_online.store(s.state == "online", Ordering::Release);
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let Ok(batch) = serde_cbor::from_slice::<EventBatch>(&p.payload) else {
                            continue;
                        };
                        let mut n = upto.load(Ordering::Acquire);
                        for e in &batch.events {
                            if e.seq == n + 1 {
                                n = e.seq;
                            }
                        }
                        upto.store(n, Ordering::Release);
                        let payload = serde_cbor::to_vec(&Ack {
                            seq: n,
                            journal: None,
                        })
                        .unwrap();
                        let _ = client
                            .publish(
                                format!("portier/v1/{gw}/ack"),
                                QoS::AtLeastOnce,
                                false,
                                payload,
                            )
                            .await;
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Self {
            contiguous,
            online,
            client: publisher,
            runtime,
        }
    }

    /// Publish `payload` to `topic` as central (QoS 1, not retained).
    pub fn publish(&self, topic: &str, payload: Vec<u8>) {
        let client = self.client.clone();
        let topic = topic.to_owned();
        self.runtime.block_on(async move {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        });
    }
}
