//! The serial bus task over a plain in-memory `AsyncRead + AsyncWrite`
//! (not a serial port): an RS-485 adapter that echoes every byte we send,
//! with echo suppression on, and Portier's PD core on the far end.

use std::time::Duration;

use portier::driver::serial::{BusHandles, BusRequest, run_bus};
use portier::osdp::message::{
    Capability, Command, OutputAction, OutputControl, PdIdentity, RawCard,
};
use portier::osdp::peripheral::{Peripheral, PeripheralConfig, PeripheralEvent};
use portier::osdp::secure::Scbk;
use portier::osdp::{Bus, BusEvent, KeyPolicy, PdConfig, Timing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

#[tokio::test(flavor = "current_thread")]
async fn bus_task_over_an_echoing_stream() {
    let key = Scbk([0x3C; 16]);
    let (cp_side, mut wire) = tokio::io::duplex(4096);
    let (pd_events_tx, mut pd_events) = mpsc::unbounded_channel();
    let (card_tx, mut card_rx) = mpsc::unbounded_channel::<RawCard>();
    // The far end: echo what the CP sends (as a 2-wire adapter does), then
    // let the PD core answer.
    let pd_key = key.clone();
    tokio::spawn(async move {
        let mut pd = Peripheral::new(PeripheralConfig {
            address: 4,
            scbk: Some(pd_key),
            install_mode: false,
            identity: PdIdentity {
                vendor: [1, 2, 3],
                model: 1,
                version: 1,
                serial: 9,
                firmware: [1, 0, 0],
            },
            capabilities: vec![Capability {
                function: 9,
                compliance: 1,
                count: 1,
            }],
            inputs: 1,
            outputs: 2,
        });
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                n = wire.read(&mut buf) => {
                    let Ok(n) = n else { return };
                    if n == 0 { return; }
                    wire.write_all(&buf[..n]).await.unwrap();
                    pd.handle_input(&buf[..n], &mut |b: &mut [u8]| b.fill(5));
                    while let Some(reply) = pd.poll_transmit() {
                        wire.write_all(&reply).await.unwrap();
                    }
                    while let Some(e) = pd.poll_event() {
                        let _ = pd_events_tx.send(e);
                    }
                }
                Some(card) = card_rx.recv() => pd.present_card(card),
            }
        }
    });

    let bus = Bus::new(
        Timing::default(),
        vec![PdConfig {
            address: 4,
            key: KeyPolicy::Secure(key),
        }],
        Box::new(|b: &mut [u8]| b.fill(9)),
    )
    .unwrap();
    let (events_tx, mut events) = mpsc::channel(64);
    let (requests, requests_rx) = mpsc::channel(8);
    let (status, status_rx) = watch::channel(Vec::new());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let handles = BusHandles {
        requests: requests_rx,
        events: events_tx,
        status,
        shutdown: shutdown_rx,
    };
    let task = tokio::spawn(run_bus(cp_side, bus, handles, true, None));

    let within = Duration::from_secs(5);
    let online = tokio::time::timeout(within, async {
        loop {
            if let Some(BusEvent::Online { secure, .. }) = events.recv().await {
                return secure;
            }
        }
    })
    .await
    .expect("online within 5 s");
    assert!(online, "secure channel over the echoing stream");
    assert!(
        status_rx
            .borrow()
            .iter()
            .any(|s| s.address == 4 && s.online && s.secure)
    );

    card_tx
        .send(RawCard {
            reader: 0,
            format: 0,
            bits: 26,
            data: vec![0x95, 0x01, 0xf4, 0x80],
        })
        .unwrap();
    let card = tokio::time::timeout(within, async {
        loop {
            if let Some(BusEvent::Card { card, .. }) = events.recv().await {
                return card;
            }
        }
    })
    .await
    .expect("card within 5 s");
    assert_eq!(card.bits, 26);

    let (queued, result) = oneshot::channel();
    let strike = Command::Output(vec![OutputControl {
        output: 0,
        action: OutputAction::TimedOn,
        timer_100ms: 50,
    }]);
    requests
        .send(BusRequest::Command {
            address: 4,
            command: strike.clone(),
            queued,
        })
        .await
        .unwrap();
    result.await.unwrap().unwrap();
    let got = tokio::time::timeout(within, async {
        loop {
            match pd_events.recv().await {
                Some(PeripheralEvent::SecureChannel) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("command reached the PD");
    assert_eq!(got, Some(PeripheralEvent::Command(strike)));

    shutdown.send(true).unwrap();
    tokio::time::timeout(within, task)
        .await
        .expect("task stops on shutdown")
        .unwrap()
        .unwrap();
}
