//! The serial bus task over a plain in-memory `AsyncRead + AsyncWrite`
//! (not a serial port): an RS-485 adapter that echoes every byte we send,
//! with echo suppression on, and Portier's PD core on the far end.

use std::time::Duration;

mod support;

use portier::driver::serial::{BusRequest, BusStart, SpawnedBus, spawn_bus};
use portier::osdp::message::{Command, OutputAction, OutputControl, RawCard};
use portier::osdp::peripheral::{PeripheralConfig, PeripheralEvent};
use portier::osdp::secure::Scbk;
use portier::osdp::{Bus, BusEvent, KeyPolicy, PdConfig, Timing};
use tokio::sync::{mpsc, oneshot, watch};

#[tokio::test(flavor = "current_thread")]
async fn bus_task_over_an_echoing_stream() {
    let key = Scbk([0x3C; 16]);
    let (cp_side, mut pd_events, card_tx) =
        support::memory_pd(PeripheralConfig::simulator(4, Some(key.clone())), true);

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
    let (shutdown, shutdown_rx) = watch::channel(false);
    let start = BusStart {
        name: "bus0".into(),
        events: events_tx,
        shutdown: shutdown_rx,
        suppress_echo: true,
        capture: None,
    };
    let SpawnedBus {
        link,
        status: status_rx,
        task,
    } = spawn_bus(cp_side, bus, start);
    let requests = link.requests;

    let within = Duration::from_secs(5);
    let online = tokio::time::timeout(within, async {
        loop {
            if let Some((_, BusEvent::Online { secure, .. })) = events.recv().await {
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
            if let Some((_, BusEvent::Card { card, .. })) = events.recv().await {
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
            queued: Some(queued),
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
