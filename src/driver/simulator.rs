//! Simulated PDs on one serial stream: several [`Peripheral`] cores share
//! the line as a multi-drop bus does (each answers only its own address).
//! Used by `portier demo`, benches and tests in place of real readers.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::clock;
use crate::osdp::message::RawCard;
use crate::osdp::peripheral::{Peripheral, PeripheralEvent};

/// Something a person does at a simulated PD.
#[derive(Debug, Clone)]
pub enum SimOp {
    /// Present a card.
    Card {
        /// PD address.
        address: u8,
        /// The card.
        card: RawCard,
    },
    /// Change an input (door contact, exit button, rotation sensor).
    Input {
        /// PD address.
        address: u8,
        /// Input number.
        input: usize,
        /// Active or not.
        active: bool,
    },
}

/// Run the PDs until shutdown or until the port closes. What the CP told
/// each PD to do is sent on `events` with its address.
pub async fn run_simulated_pds<P>(
    mut port: P,
    mut pds: Vec<Peripheral>,
    mut ops: mpsc::Receiver<SimOp>,
    events: mpsc::Sender<(u8, PeripheralEvent)>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    P: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 1024];
    let mut ops_open = true;
    loop {
        for pd in &mut pds {
            while let Some(bytes) = pd.poll_transmit() {
                port.write_all(&bytes).await?;
            }
            while let Some(event) = pd.poll_event() {
                let _ = events.try_send((pd.address(), event));
            }
        }
        tokio::select! {
            n = port.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                for pd in &mut pds {
                    pd.handle_input(&buf[..n], &mut clock::os_entropy);
                }
            }
            op = ops.recv(), if ops_open => match op {
                None => ops_open = false,
                Some(SimOp::Card { address, card }) => {
                    if let Some(pd) = pds.iter_mut().find(|p| p.address() == address) {
                        pd.present_card(card);
                    }
                }
                Some(SimOp::Input { address, input, active }) => {
                    if let Some(pd) = pds.iter_mut().find(|p| p.address() == address) {
                        pd.set_input(input, active);
                    }
                }
            },
            _ = shutdown.changed() => return Ok(()),
        }
    }
}
