//! `portier central muster` against a real PostgreSQL and Mosquitto over
//! mTLS: the muster list is each card's latest `presence` event of a door
//! with areas — an entry puts it in the area, a departure in the outer
//! area or out of every area — per gateway, filtered by gateway and area.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use portier::door::Direction;
use portier::event::EventKind;
use support::broker::Broker;
use support::central::{CentralProc, JournalGateway, T, write_config};
use support::postgres::Postgres;
use support::wait_for;

fn passage(
    credential: &str,
    direction: Direction,
    area: &str,
    door: &str,
    outer: Option<&str>,
) -> EventKind {
    EventKind::Presence {
        credential: credential.into(),
        name: Some(format!("holder of {credential}")),
        direction,
        area: Some(area.into()),
        door: Some(door.into()),
        outer: outer.map(Into::into),
    }
}

#[test]
fn central_lists_who_is_inside_from_the_passages() {
    let pg = Postgres::start();
    let broker = Broker::start(&["gw-a", "gw-b"]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &broker,
        &pg,
        "central-1",
        &broker.pki().join("central-signing.key"),
    );
    let central = |args: &[&str]| {
        let mut all = vec!["central", "--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        support::portier_ok(&all)
    };
    central(&["migrate"]);
    let mut proc_ = CentralProc::spawn(&config, &[]);
    proc_.wait_connected();
    let (a, b, c) = ("h10301:42:1", "h10301:42:2", "h10301:42:3");
    let mut gw_a = JournalGateway::new("gw-a");
    gw_a.append(vec![
        // a: into the building, into the lab wing, back to the building.
        passage(a, Direction::In, "building", "main", None),
        passage(a, Direction::In, "lab-wing", "lab-1", None),
        passage(a, Direction::Out, "lab-wing", "lab-1", Some("building")),
        // b: into the building and the lab wing.
        passage(b, Direction::In, "building", "main", None),
        passage(b, Direction::In, "lab-wing", "lab-1", None),
        // c: in and out of the building.
        passage(c, Direction::In, "building", "main", None),
        passage(c, Direction::Out, "building", "main", None),
        // A presence event of a door without areas is not on the list.
        EventKind::Presence {
            credential: "h10301:42:4".into(),
            name: None,
            direction: Direction::In,
            area: None,
            door: None,
            outer: None,
        },
    ]);
    let mut gw_b = JournalGateway::new("gw-b");
    gw_b.append(vec![passage(c, Direction::In, "hall", "front", None)]);
    gw_a.connect(&broker);
    gw_b.connect(&broker);
    wait_for(T, "both journals acked", || {
        gw_a.acked() == 8 && gw_b.acked() == 1
    });
    let lines = |args: &[&str]| -> Vec<(String, String, String, String)> {
        let mut all = vec!["muster"];
        all.extend_from_slice(args);
        central(&all)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
                (s("gateway"), s("credential"), s("area"), s("door"))
            })
            .collect()
    };
    let row = |g: &str, cred: &str, area: &str, door: &str| {
        (
            g.to_owned(),
            cred.to_owned(),
            area.to_owned(),
            door.to_owned(),
        )
    };
    assert_eq!(
        lines(&[]),
        [
            row("gw-a", a, "building", "lab-1"),
            row("gw-a", b, "lab-wing", "lab-1"),
            row("gw-b", c, "hall", "front"),
        ]
    );
    assert_eq!(
        lines(&["--gateway", "gw-a", "--area", "lab-wing"]),
        [row("gw-a", b, "lab-wing", "lab-1")]
    );
    assert_eq!(lines(&["--gateway", "gw-b", "--area", "lab-wing"]), []);
    proc_.kill();
}
