//! The serial bus task: owns one RS-485 port and drives one [`Bus`] core.
//!
//! The loop is the sans-IO contract made concrete: send what the bus wants
//! to send, hand its events to the owner, then wait for bytes, a command,
//! the bus's deadline, or shutdown — whichever comes first. Works over any
//! `AsyncRead + AsyncWrite` (a serial port, or a pseudo-terminal in tests).

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::clock;
pub use crate::config::port::{PortSettings, Rs485Mode};
use crate::ids::BusId;
use crate::osdp::message::Command;
use crate::osdp::{Bus, BusError, BusEvent, PdStatus, pcap};

/// Serial driver failures.
#[derive(Debug, Error)]
pub enum SerialError {
    /// The baud rate is not one OSDP uses.
    #[error("baud rate {0} not supported (9600, 19200, 38400, 57600, 115200, 230400)")]
    BadBaud(u32),
    /// The port could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// Device path.
        path: PathBuf,
        /// Cause.
        source: tokio_serial::Error,
    },
    /// Kernel RS-485 mode could not be set.
    #[error("cannot enable kernel RS-485 mode on {path}: {source}")]
    Rs485 {
        /// Device path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Reading or writing the port failed.
    #[error("serial I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Open a port for OSDP: 8N1, no flow control, exclusive.
pub fn open_port(settings: &PortSettings) -> Result<tokio_serial::SerialStream, SerialError> {
    const BAUDS: [u32; 6] = [9600, 19200, 38400, 57600, 115_200, 230_400];
    if !BAUDS.contains(&settings.baud) {
        return Err(SerialError::BadBaud(settings.baud));
    }
    let path_str = settings.path.to_string_lossy().into_owned();
    let builder = tokio_serial::new(path_str, settings.baud)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(tokio_serial::FlowControl::None);
    let port = tokio_serial::SerialStream::open(&builder).map_err(|source| SerialError::Open {
        path: settings.path.clone(),
        source,
    })?;
    if settings.rs485 == Rs485Mode::Kernel {
        use std::os::fd::AsRawFd;
        rs485::enable(port.as_raw_fd()).map_err(|source| SerialError::Rs485 {
            path: settings.path.clone(),
            source,
        })?;
    }
    Ok(port)
}

/// A request to the bus task.
#[derive(Debug)]
pub enum BusRequest {
    /// Queue a command for a PD; the result comes back on the oneshot.
    Command {
        /// PD address.
        address: u8,
        /// What to send.
        command: Command,
        /// Whether it was queued, for a caller that waits to know.
        queued: Option<tokio::sync::oneshot::Sender<Result<(), BusError>>>,
    },
    /// Rotate a PD's Secure Channel key ([`Bus::rotate_key`]); the key is
    /// on disk already.
    RotateKey {
        /// PD address.
        address: u8,
        /// The new key.
        key: crate::osdp::secure::Scbk,
        /// Whether the rotation started.
        started: tokio::sync::oneshot::Sender<Result<(), BusError>>,
    },
    /// Send a file to a PD ([`Bus::start_transfer`]).
    StartTransfer {
        /// PD address.
        address: u8,
        /// The file.
        offer: crate::osdp::transfer::FileOffer,
        /// Whether the transfer started.
        started: tokio::sync::oneshot::Sender<Result<(), BusError>>,
    },
    /// Abort a PD's file transfer ([`Bus::abort_transfer`]).
    AbortTransfer {
        /// PD address.
        address: u8,
    },
}

/// Where the task writes a bus capture (pcap, link type 162).
#[derive(Debug)]
pub struct Capture {
    file: std::fs::File,
}

impl Capture {
    /// Create a capture file (truncating), mode 0600 (also when it existed
    /// with another mode: a capture shows card data), writing the pcap
    /// header.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(&pcap::file_header())?;
        Ok(Self { file })
    }

    fn write(&mut self, packet: &[u8]) {
        use std::io::Write;
        // A capture is a diagnostic aid: a failed write must not stop the bus.
        if let Err(err) = self
            .file
            .write_all(&pcap::record(clock::since_epoch(), packet))
        {
            tracing::warn!(%err, "bus capture write failed");
        }
    }
}

/// Channels between the bus task and its owner.
#[derive(Debug)]
pub struct BusHandles {
    /// Requests to the bus.
    pub requests: mpsc::Receiver<BusRequest>,
    /// This bus's name: the task tags its own events with it.
    pub bus: BusId,
    /// Events from the bus (card reads, online/offline, alarms, …).
    pub events: mpsc::Sender<(BusId, BusEvent)>,
    /// Latest PD statuses, updated after every exchange.
    pub status: watch::Sender<Vec<PdStatus>>,
    /// Ends the task when it changes to `true`.
    pub shutdown: watch::Receiver<bool>,
}

/// A bus as the daemon loop sees it: where its commands go.
#[derive(Debug)]
pub struct BusLink {
    /// Bus name.
    pub name: BusId,
    /// Requests to that bus task.
    pub requests: mpsc::Sender<BusRequest>,
}

/// What a bus task is started with, besides its port and core.
pub struct BusStart {
    /// The bus's name: its events are tagged with it.
    pub name: BusId,
    /// Where the tagged events go (shared by every bus of a daemon).
    pub events: mpsc::Sender<(BusId, BusEvent)>,
    /// Ends the task when it changes to `true`.
    pub shutdown: watch::Receiver<bool>,
    /// Drop our own transmitted bytes read back (half-duplex adapters).
    pub suppress_echo: bool,
    /// Record every frame to a pcap file (`portier reader probe`).
    pub capture: Option<Capture>,
}

/// A running bus task: its requests, its PDs' status, its end.
pub struct SpawnedBus {
    /// Requests to the bus (what the daemon loop sends through).
    pub link: BusLink,
    /// The PDs' latest status.
    pub status: watch::Receiver<Vec<PdStatus>>,
    /// The task; it ends at shutdown, or with the port's error.
    pub task: tokio::task::JoinHandle<Result<(), SerialError>>,
}

/// Start the task that drives `bus` over `port`: the one way a bus is
/// wired, for the daemon, the reader tools, the tests and the benches.
pub fn spawn_bus<P>(port: P, bus: Bus, start: BusStart) -> SpawnedBus
where
    P: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (requests, requests_rx) = mpsc::channel(256);
    let (status, status_rx) = watch::channel(Vec::new());
    let handles = BusHandles {
        requests: requests_rx,
        bus: start.name.clone(),
        events: start.events,
        status,
        shutdown: start.shutdown,
    };
    let task = tokio::spawn(run_bus(
        port,
        bus,
        handles,
        start.suppress_echo,
        start.capture,
    ));
    SpawnedBus {
        link: BusLink {
            name: start.name,
            requests,
        },
        status: status_rx,
        task,
    }
}

/// Drive `bus` over `port` until shutdown or until the event receiver is gone.
pub async fn run_bus<P>(
    mut port: P,
    mut bus: Bus,
    mut handles: BusHandles,
    suppress_echo: bool,
    mut capture: Option<Capture>,
) -> Result<(), SerialError>
where
    P: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 1024];
    let mut echo: Vec<u8> = Vec::new();
    // After a frame with key material (KEYSET) nothing read is captured
    // until our next frame: on a half-duplex line what comes back before
    // then is the adapter's echo of the key frame (when echo is not
    // suppressed, or is only partly matched) and the PD's answer to it.
    let mut capture_rx = true;
    loop {
        let now = clock::monotonic();
        while let Some(tx) = bus.poll_transmit(now) {
            port.write_all(&tx.bytes).await?;
            port.flush().await?;
            if suppress_echo {
                echo.extend_from_slice(&tx.bytes);
            }
            capture_rx = !tx.sensitive;
            if let Some(capture) = &mut capture
                && !tx.sensitive
            {
                capture.write(&tx.bytes);
            }
        }
        while let Some(event) = bus.poll_event() {
            if handles
                .events
                .send((handles.bus.clone(), event))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        handles.status.send_replace(bus.statuses());
        let sleep = match bus.poll_timeout() {
            Some(deadline) => tokio::time::sleep_until(deadline.into()),
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            read = port.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
                let mut bytes = &buf[..n];
                // Drop the adapter's echo of what we sent, byte by byte.
                while let (Some(&e), Some(&b)) = (echo.first(), bytes.first()) {
                    if e != b { echo.clear(); break; }
                    echo.remove(0);
                    bytes = &bytes[1..];
                }
                if !bytes.is_empty() {
                    if let Some(capture) = &mut capture && capture_rx { capture.write(bytes); }
                    bus.handle_input(clock::monotonic(), bytes);
                }
            }
            () = sleep => bus.handle_timeout(clock::monotonic()),
            request = handles.requests.recv() => match request {
                Some(BusRequest::Command { address, command, queued }) => {
                    let result = bus.queue_command(address, command);
                    if let Some(queued) = queued {
                        let _ = queued.send(result);
                    } else if let Err(e) = result {
                        // An offline PD refuses commands; it gets its doors'
                        // state when it comes back online.
                        tracing::debug!(address, error = %e, "command not queued");
                    }
                }
                Some(BusRequest::RotateKey { address, key, started }) => {
                    let _ = started.send(bus.rotate_key(address, key));
                }
                Some(BusRequest::StartTransfer { address, offer, started }) => {
                    let _ = started.send(bus.start_transfer(clock::monotonic(), address, offer));
                }
                Some(BusRequest::AbortTransfer { address }) => {
                    if let Err(e) = bus.abort_transfer(address) {
                        tracing::debug!(address, error = %e, "nothing to abort");
                    }
                }
                None => return Ok(()),
            },
            changed = handles.shutdown.changed() => {
                if changed.is_err() || *handles.shutdown.borrow() { return Ok(()); }
            }
        }
    }
}

/// Kernel RS-485 mode: one ioctl (the other unsafe call is `statvfs` in
/// [`super::disk`]).
#[allow(unsafe_code)]
mod rs485 {
    use std::os::fd::RawFd;

    const TIOCSRS485: libc::c_ulong = 0x542F;
    const SER_RS485_ENABLED: u32 = 1 << 0;
    const SER_RS485_RTS_ON_SEND: u32 = 1 << 1;

    /// `struct serial_rs485` from `<linux/serial.h>`.
    #[repr(C)]
    #[derive(Default)]
    struct SerialRs485 {
        flags: u32,
        delay_rts_before_send: u32,
        delay_rts_after_send: u32,
        padding: [u32; 5],
    }

    pub(super) fn enable(fd: RawFd) -> std::io::Result<()> {
        let config = SerialRs485 {
            flags: SER_RS485_ENABLED | SER_RS485_RTS_ON_SEND,
            ..Default::default()
        };
        // SAFETY: `fd` is an open descriptor owned by the caller for the
        // duration of the call, and `config` is a valid, initialised
        // `serial_rs485` that the kernel only reads.
        let rc = unsafe { libc::ioctl(fd, TIOCSRS485 as _, &config as *const SerialRs485) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}
