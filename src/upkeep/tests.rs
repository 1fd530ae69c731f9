//! The upkeep core in virtual time: what reaches a bus, what is journaled.

use super::*;
use crate::osdp::OfflineReason;
use crate::osdp::message::PdIdentity;

const BUS: &str = "bus-1";

fn places() -> HashMap<ReaderId, ReaderPlace> {
    let place = |address, secure| ReaderPlace {
        bus: BUS.into(),
        address,
        secure,
    };
    HashMap::from([
        ("entrance-reader".into(), place(1, true)),
        ("side-reader".into(), place(2, true)),
        ("bench-reader".into(), place(3, false)),
    ])
}

fn update_of(reader: &str, data: &[u8], vendor: Option<&str>, model: Option<u8>) -> ReaderAction {
    ReaderAction::ReaderUpdate {
        reader: reader.into(),
        sha256: FileDigest::of(data),
        bytes: data.len() as u64,
        file_type: 1,
        vendor: vendor.map(str::to_owned),
        model,
    }
}

fn rotation_of(reader: &str) -> ReaderAction {
    ReaderAction::RotateKey {
        reader: reader.into(),
    }
}

struct Rig {
    core: Upkeep,
    now: Instant,
}

impl Rig {
    fn new() -> Self {
        Self {
            core: Upkeep::new(places(), 1 << 20),
            now: crate::test_clock::epoch(),
        }
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        self.core.handle(self.now, input);
        std::iter::from_fn(|| self.core.poll_output()).collect()
    }

    fn online(&mut self, address: u8) -> Vec<Output> {
        self.bus(BusEvent::Online {
            address,
            secure: true,
            identity: Some(PdIdentity {
                vendor: [0xb2, 0xa1, 0x00],
                model: 1,
                version: 2,
                serial: 4096,
                firmware: [1, 2, 3],
            }),
            capabilities: Vec::new(),
        })
    }

    fn bus(&mut self, event: BusEvent) -> Vec<Output> {
        self.input(Input::Bus {
            bus: BUS.into(),
            event,
        })
    }

    fn command(&mut self, id: &str, valid_secs: u64, action: ReaderAction) -> Vec<Output> {
        self.input(Input::Command {
            id: id.into(),
            valid_for: Duration::from_secs(valid_secs),
            action,
        })
    }

    fn update(&mut self, id: &str, reader: &str, data: &[u8]) -> Vec<Output> {
        self.command(id, 3600, update_of(reader, data, None, None))
    }

    fn file(&mut self, id: &str, data: &[u8]) -> Vec<Output> {
        self.input(Input::File {
            command: id.into(),
            data: data.into(),
            digest: FileDigest::of(data),
        })
    }

    fn advance(&mut self, by: Duration) -> Vec<Output> {
        self.now += by;
        if self.core.poll_timeout().is_some_and(|t| t <= self.now) {
            self.input(Input::Timeout)
        } else {
            Vec::new()
        }
    }
}

fn events(outputs: &[Output]) -> Vec<&EventKind> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Record(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn failure(outputs: &[Output]) -> Option<UpkeepFailure> {
    events(outputs).into_iter().find_map(|e| match e {
        EventKind::ReaderUpdateFailed { reason, .. }
        | EventKind::ReaderKeyRotationFailed { reason, .. } => Some(*reason),
        _ => None,
    })
}

fn transfers(outputs: &[Output]) -> Vec<(u8, usize)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::StartTransfer { address, offer, .. } => Some((*address, offer.data.len())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_file_matching_its_command_is_sent_and_its_end_journaled() {
    let mut rig = Rig::new();
    rig.online(1);
    let data = vec![7u8; 1000];
    assert!(rig.update("c1", "entrance-reader", &data).is_empty());
    let out = rig.file("c1", &data);
    assert_eq!(transfers(&out), [(1, 1000)]);
    assert!(matches!(
        events(&out)[..],
        [EventKind::ReaderUpdateStarted { bytes: 1000, .. }]
    ));
    // Progress at each tenth, once.
    let mut said = 0;
    for confirmed in (0..=1000).step_by(50) {
        let out = rig.bus(BusEvent::TransferProgress {
            address: 1,
            confirmed,
            total: 1000,
        });
        said += events(&out).len();
    }
    assert_eq!(said, 9);
    rig.now += Duration::from_secs(3);
    let out = rig.bus(BusEvent::TransferFinished {
        address: 1,
        reboot: true,
    });
    assert!(matches!(
        events(&out)[..],
        [EventKind::ReaderUpdateFinished {
            millis: 3000,
            reboot: true,
            ..
        }]
    ));
    assert!(!rig.core.busy(&BUS.into()));
}

#[test]
fn a_file_whose_hash_is_not_the_command_s_is_never_sent() {
    let mut rig = Rig::new();
    rig.online(1);
    rig.update("c1", "entrance-reader", b"the right firmware");
    let out = rig.file("c1", b"the wrong firmware");
    assert!(transfers(&out).is_empty());
    assert_eq!(failure(&out), Some(UpkeepFailure::HashMismatch));
    // Same hash prefix, other length: still refused (the size is checked).
    rig.update("c2", "entrance-reader", b"abc");
    let out = rig.file("c2", b"abcd");
    assert_eq!(failure(&out), Some(UpkeepFailure::HashMismatch));
    assert!(!rig.core.busy(&BUS.into()));
}

#[test]
fn a_file_before_its_command_is_held_a_while() {
    let mut rig = Rig::new();
    rig.online(1);
    let data = b"firmware".to_vec();
    assert!(rig.file("c1", &data).is_empty());
    let out = rig.update("c1", "entrance-reader", &data);
    assert_eq!(transfers(&out), [(1, data.len())]);

    // One held too long is dropped; its command then waits in vain.
    let mut rig = Rig::new();
    rig.online(1);
    rig.file("c2", &data);
    rig.advance(HELD_FILE_FOR + Duration::from_secs(1));
    let out = rig.update("c2", "entrance-reader", &data);
    assert!(transfers(&out).is_empty());
    let out = rig.advance(Duration::from_secs(3600));
    assert_eq!(failure(&out), Some(UpkeepFailure::FileNotReceived));
}

#[test]
fn one_job_per_bus_and_unknown_readers_are_refused() {
    let mut rig = Rig::new();
    rig.update("c1", "entrance-reader", b"a");
    let out = rig.update("c2", "side-reader", b"b");
    assert_eq!(failure(&out), Some(UpkeepFailure::Busy));
    let out = rig.command("c3", 60, rotation_of("side-reader"));
    assert_eq!(failure(&out), Some(UpkeepFailure::Busy));
    let out = rig.update("c4", "no-such-reader", b"c");
    assert_eq!(failure(&out), Some(UpkeepFailure::UnknownReader));
    let out = rig.command("c5", 60, rotation_of("bench-reader"));
    // The bus is asked about first, whatever else is wrong.
    assert_eq!(failure(&out), Some(UpkeepFailure::Busy));
}

#[test]
fn an_offline_reader_is_waited_for_until_the_command_expires() {
    let mut rig = Rig::new();
    let data = b"fw".to_vec();
    rig.update("c1", "entrance-reader", &data);
    assert!(transfers(&rig.file("c1", &data)).is_empty());
    let out = rig.online(1);
    assert_eq!(transfers(&out).len(), 1, "sent once the reader is online");

    let mut rig = Rig::new();
    rig.update("c2", "entrance-reader", &data);
    rig.file("c2", &data);
    let out = rig.advance(Duration::from_secs(3601));
    assert_eq!(failure(&out), Some(UpkeepFailure::ReaderOffline));
    assert!(!rig.core.busy(&BUS.into()));
}

#[test]
fn a_reader_of_another_vendor_or_model_gets_nothing() {
    for (vendor, model, want) in [
        (Some("aabbcc"), None, UpkeepFailure::WrongVendor),
        (None, Some(9), UpkeepFailure::WrongModel),
    ] {
        let mut rig = Rig::new();
        rig.online(1);
        let data = b"fw";
        rig.command("c1", 60, update_of("entrance-reader", data, vendor, model));
        let out = rig.file("c1", data);
        assert!(transfers(&out).is_empty());
        assert_eq!(failure(&out), Some(want));
    }
}

#[test]
fn a_reader_lost_mid_file_gets_it_again_from_the_start_three_times_at_most() {
    let mut rig = Rig::new();
    rig.online(1);
    let data = vec![1u8; 100];
    rig.update("c1", "entrance-reader", &data);
    assert_eq!(transfers(&rig.file("c1", &data)).len(), 1);
    for attempt in 2..=ATTEMPTS {
        let out = rig.bus(BusEvent::TransferFailed {
            address: 1,
            reason: TransferFailure::Offline,
        });
        assert!(failure(&out).is_none());
        rig.bus(BusEvent::Offline {
            address: 1,
            reason: OfflineReason::NoReply,
        });
        let out = rig.online(1);
        assert_eq!(transfers(&out).len(), 1, "attempt {attempt}");
        assert!(
            events(&out).is_empty(),
            "started is said once, not per attempt"
        );
    }
    let out = rig.bus(BusEvent::TransferFailed {
        address: 1,
        reason: TransferFailure::Offline,
    });
    assert_eq!(failure(&out), Some(UpkeepFailure::ReaderLost));
}

#[test]
fn a_refusing_reader_or_a_refusing_bus_ends_the_job() {
    let mut rig = Rig::new();
    rig.online(1);
    rig.update("c1", "entrance-reader", b"x");
    rig.file("c1", b"x");
    let out = rig.bus(BusEvent::TransferFailed {
        address: 1,
        reason: TransferFailure::Refused(-2),
    });
    assert_eq!(failure(&out), Some(UpkeepFailure::RefusedByReader));

    rig.update("c2", "entrance-reader", b"y");
    rig.file("c2", b"y");
    let out = rig.input(Input::RequestFailed {
        reader: "entrance-reader".into(),
        reason: UpkeepFailure::Bus,
        detail: "the bus stopped".into(),
        generation: 1,
    });
    assert_eq!(failure(&out), Some(UpkeepFailure::Bus));
    assert!(!rig.core.busy(&BUS.into()));
}

fn rotate(rig: &mut Rig, id: &str) -> Vec<Output> {
    rig.command(id, 300, rotation_of("entrance-reader"))
}

fn key_steps(outputs: &[Output]) -> Vec<KeyStep> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::KeyFile { step, .. } => Some(*step),
            _ => None,
        })
        .collect()
}

#[test]
fn a_rotation_retires_the_old_key_only_after_the_reader_proved_the_new_one() {
    let mut rig = Rig::new();
    rig.online(1);
    let out = rotate(&mut rig, "k1");
    assert!(matches!(
        out[..],
        [
            Output::Record(EventKind::ReaderKeyRotationStarted { .. }),
            Output::RotateKey { address: 1, .. }
        ]
    ));
    // The acknowledgement alone retires nothing: its answer may be lost.
    assert!(key_steps(&rig.bus(BusEvent::KeyRotated { address: 1 })).is_empty());
    // The reader's cryptogram in the new session proves the new key.
    let out = rig.bus(BusEvent::KeyResolved {
        address: 1,
        pending: true,
    });
    assert_eq!(key_steps(&out), [KeyStep::Promote]);
    assert!(matches!(
        events(&out)[..],
        [EventKind::ReaderKeyRotated {
            command: Some(_),
            ..
        }]
    ));
    // The session that follows changes nothing more.
    assert!(rig.online(1).is_empty());
    assert!(!rig.core.busy(&BUS.into()));
}

#[test]
fn a_rotation_the_reader_refuses_or_ignores_keeps_the_old_key() {
    let mut rig = Rig::new();
    rig.online(1);
    rotate(&mut rig, "k1");
    let out = rig.bus(BusEvent::KeyRotationFailed {
        address: 1,
        reason: RotationFailure::Nak(crate::osdp::message::NakCode::CommandLength),
    });
    assert_eq!(key_steps(&out), [KeyStep::Discard]);
    assert_eq!(failure(&out), Some(UpkeepFailure::RefusedByReader));

    rotate(&mut rig, "k2");
    rig.bus(BusEvent::KeyRotated { address: 1 });
    let out = rig.bus(BusEvent::KeyResolved {
        address: 1,
        pending: false,
    });
    assert_eq!(key_steps(&out), [KeyStep::Discard]);
    assert_eq!(failure(&out), Some(UpkeepFailure::OldKeyKept));
}

#[test]
fn a_rotation_cut_short_keeps_both_keys_until_a_bring_up_settles_them() {
    let mut rig = Rig::new();
    rig.online(1);
    rotate(&mut rig, "k1");
    let out = rig.bus(BusEvent::Offline {
        address: 1,
        reason: OfflineReason::NoReply,
    });
    assert!(key_steps(&out).is_empty(), "both keys stay");
    assert_eq!(failure(&out), Some(UpkeepFailure::ReaderLost));
    // The next bring-up tries both and says which the reader holds.
    let out = rig.bus(BusEvent::KeyResolved {
        address: 1,
        pending: true,
    });
    assert_eq!(key_steps(&out), [KeyStep::Settle { pending: true }]);
    assert!(matches!(
        events(&out)[..],
        [EventKind::ReaderKeyRotated { command: None, .. }]
    ));
}

#[test]
fn a_rotation_of_a_plaintext_reader_or_an_offline_one_is_refused_in_time() {
    let mut rig = Rig::new();
    let out = rig.command("k1", 60, rotation_of("bench-reader"));
    assert_eq!(failure(&out), Some(UpkeepFailure::NoSecureChannel));
    let out = rotate(&mut rig, "k2");
    assert!(out.is_empty(), "waits for the reader");
    let out = rig.advance(Duration::from_secs(301));
    assert_eq!(failure(&out), Some(UpkeepFailure::ReaderOffline));
}

#[test]
fn a_transfer_that_goes_quiet_is_aborted_and_never_blocks_its_bus() {
    let mut rig = Rig::new();
    rig.online(1);
    rig.update("c1", "entrance-reader", b"fw");
    rig.file("c1", b"fw");
    // Progress keeps it alive…
    rig.advance(QUIET_LIMIT - Duration::from_secs(1));
    rig.bus(BusEvent::TransferProgress {
        address: 1,
        confirmed: 1,
        total: 2,
    });
    assert!(rig.advance(QUIET_LIMIT - Duration::from_secs(1)).is_empty());
    // …silence (a lost report, a PD answering BUSY for ever) ends it.
    let out = rig.advance(Duration::from_secs(2));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::AbortTransfer { address: 1, .. }))
    );
    assert_eq!(failure(&out), Some(UpkeepFailure::Stalled));
    assert!(!rig.core.busy(&BUS.into()));

    // A rotation whose answer never comes ends too, keeping both keys.
    rotate(&mut rig, "k1");
    let out = rig.advance(QUIET_LIMIT + Duration::from_secs(1));
    assert!(key_steps(&out).is_empty());
    assert_eq!(failure(&out), Some(UpkeepFailure::ReaderLost));
}

#[test]
fn a_file_for_a_vendor_is_not_sent_to_a_reader_that_never_said_who_it_is() {
    let mut rig = Rig::new();
    rig.bus(BusEvent::Online {
        address: 1,
        secure: true,
        identity: None,
        capabilities: Vec::new(),
    });
    rig.command(
        "c1",
        60,
        update_of("entrance-reader", b"fw", Some("b2a100"), None),
    );
    let out = rig.file("c1", b"fw");
    assert!(transfers(&out).is_empty());
    assert_eq!(failure(&out), Some(UpkeepFailure::IdentityUnknown));
    // A malformed vendor is refused with the command.
    let out = rig.command(
        "c2",
        60,
        update_of("entrance-reader", b"fw", Some("acme"), None),
    );
    assert_eq!(failure(&out), Some(UpkeepFailure::WrongVendor));
}

#[test]
fn a_reader_that_drops_out_before_the_request_is_waited_for_again() {
    let mut rig = Rig::new();
    rig.online(1); // online period 1
    rig.update("c1", "entrance-reader", b"fw");
    assert_eq!(transfers(&rig.file("c1", b"fw")).len(), 1);
    let refused = |generation| Input::RequestFailed {
        reader: "entrance-reader".into(),
        reason: UpkeepFailure::ReaderOffline,
        detail: "PD 1 is offline".into(),
        generation,
    };
    // The bus refused: the PD dropped out before the request reached it.
    let out = rig.input(refused(1));
    assert!(failure(&out).is_none());
    assert!(transfers(&out).is_empty(), "not until it is back");
    let out = rig.online(1); // period 2
    assert_eq!(transfers(&out).len(), 1, "sent once it is back");
    assert!(events(&out).is_empty(), "started is not said again");
    // A refusal that comes after the reader's next `Online` (period 3):
    // asked again at once, in the new period.
    rig.online(1);
    let out = rig.input(refused(2));
    assert_eq!(transfers(&out).len(), 1);
    // A refusal of an older request than the job's latest: ignored (no
    // second transfer, no failure).
    let out = rig.input(refused(2));
    assert!(out.is_empty(), "{out:?}");
    // Refusals never use up the job: the reader never saw the request.
    for _ in 0..5 {
        rig.input(refused(3));
        rig.online(1);
    }
    assert!(rig.core.busy(&BUS.into()));
}

#[test]
fn a_rotation_the_reader_never_got_or_answered_twice_is_settled_right() {
    // Offline before KEYSET went out: the new key is dropped.
    let mut rig = Rig::new();
    rig.online(1);
    rotate(&mut rig, "k1");
    let out = rig.bus(BusEvent::KeyRotationFailed {
        address: 1,
        reason: RotationFailure::NotSent,
    });
    assert_eq!(key_steps(&out), [KeyStep::Discard]);
    assert!(failure(&out).is_some());
    // A NAK to a resent KEYSET: the handshake that follows decides.
    rotate(&mut rig, "k2");
    let out = rig.bus(BusEvent::KeyRotationFailed {
        address: 1,
        reason: RotationFailure::Unsettled,
    });
    assert!(out.is_empty(), "nothing decided yet: {out:?}");
    let out = rig.bus(BusEvent::KeyResolved {
        address: 1,
        pending: true,
    });
    assert_eq!(key_steps(&out), [KeyStep::Promote]);
}

#[test]
fn a_reader_gone_mid_file_without_its_transfer_report_gets_the_file_again() {
    let mut rig = Rig::new();
    rig.online(1);
    rig.update("c1", "entrance-reader", b"fw");
    rig.file("c1", b"fw");
    // The transfer's own report was lost; `Offline` alone.
    let out = rig.bus(BusEvent::Offline {
        address: 1,
        reason: OfflineReason::NoReply,
    });
    assert!(failure(&out).is_none());
    assert_eq!(transfers(&rig.online(1)).len(), 1);
}

#[test]
fn a_command_waits_for_its_file_only_a_while_and_a_copy_is_ignored() {
    let mut rig = Rig::new();
    rig.online(1);
    rig.command(
        "c1",
        6 * 3600,
        update_of("entrance-reader", b"fw", None, None),
    );
    let out = rig.advance(HELD_FILE_FOR);
    assert_eq!(failure(&out), Some(UpkeepFailure::FileNotReceived));
    assert!(
        !rig.core.busy(&BUS.into()),
        "the bus is free long before expiry"
    );

    // A second delivery of the same file (QoS 1) changes nothing.
    rig.update("c2", "entrance-reader", b"fw");
    let first = rig.file("c2", b"fw");
    assert!(first.iter().any(|o| matches!(o, Output::KeepFile { .. })));
    assert!(rig.file("c2", b"fw").is_empty());
}
