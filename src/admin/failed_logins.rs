//! Failed admin logins, summed per client address before they are
//! journaled (sans-IO: the caller passes the time and runs the minute).
//!
//! Why: a failed login is a security event and is kept even by a full
//! journal, so journaling each one would let anyone who reaches the admin
//! port fill the journal without a password. Here the first failure from an
//! address in a minute is journaled at once (the security desk sees the
//! attempt start) and the rest of that minute as one `admin_login_failed`
//! with a count when the minute ends. At most [`MAX_CLIENTS`] addresses
//! are told apart per minute; failures from further addresses are summed
//! under `other`. So a flood adds at most `2 × (MAX_CLIENTS + 1)` records
//! a minute, whatever its rate or number of sources (`docs/admin.md`).

use std::collections::HashMap;
use std::net::IpAddr;

use jiff::Timestamp;

use crate::event::EventKind;
use crate::text::{NAME, bounded};

/// Client addresses told apart in one minute.
pub(crate) const MAX_CLIENTS: usize = 16;

/// The address a failure is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    Addr(IpAddr),
    /// Past [`MAX_CLIENTS`] in this minute.
    Other,
}

impl Client {
    fn text(self) -> String {
        match self {
            Self::Addr(a) => a.to_string(),
            Self::Other => "other".into(),
        }
    }
}

/// What is not yet journaled for one client this minute.
#[derive(Debug)]
struct Tally {
    user: String,
    count: u64,
    refused: u64,
    since: Timestamp,
}

/// The failures of the current minute.
#[derive(Debug, Default)]
pub(crate) struct FailedLogins {
    clients: HashMap<Client, Tally>,
}

impl FailedLogins {
    /// One failed attempt from `client` as `user` at `at`; `refused` when
    /// no password was checked (locked out, or every check busy). Returns
    /// the record to journal now: the first failure of a client in this
    /// minute, else nothing (it is summed).
    pub(crate) fn failed(
        &mut self,
        client: IpAddr,
        user: &str,
        refused: bool,
        at: Timestamp,
    ) -> Option<EventKind> {
        let mut key = Client::Addr(client);
        if !self.clients.contains_key(&key) && self.clients.len() >= MAX_CLIENTS {
            key = Client::Other;
        }
        let user = bounded(user, NAME).into_owned();
        match self.clients.get_mut(&key) {
            Some(t) => {
                if t.count == 0 {
                    t.since = at;
                }
                t.count += 1;
                t.refused += u64::from(refused);
                t.user = user;
                None
            }
            None => {
                self.clients.insert(
                    key,
                    Tally {
                        user: user.clone(),
                        count: 0,
                        refused: 0,
                        since: at,
                    },
                );
                Some(EventKind::AdminLoginFailed {
                    client: key.text(),
                    user,
                    count: 1,
                    refused: u64::from(refused),
                    since: at,
                })
            }
        }
    }

    /// End the minute: the sums not yet journaled, and a fresh minute.
    pub(crate) fn end_minute(&mut self) -> Vec<EventKind> {
        let mut out: Vec<(Client, Tally)> =
            self.clients.drain().filter(|(_, t)| t.count > 0).collect();
        out.sort_by_key(|(_, t)| t.since);
        out.into_iter()
            .map(|(client, t)| EventKind::AdminLoginFailed {
                client: client.text(),
                user: t.user,
                count: t.count,
                refused: t.refused,
                since: t.since,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0000 + n))
    }

    #[test]
    fn the_first_at_once_the_rest_summed_at_the_minute() {
        let mut f = FailedLogins::default();
        let first = f.failed(ip(1), "tech", false, at(0)).unwrap();
        assert!(matches!(
            first,
            EventKind::AdminLoginFailed { count: 1, refused: 0, ref client, .. } if client == "127.0.0.1"
        ));
        for i in 0..9 {
            assert!(f.failed(ip(1), "tech2", i % 3 == 0, at(1 + i)).is_none());
        }
        let sums = f.end_minute();
        assert_eq!(sums.len(), 1);
        let EventKind::AdminLoginFailed {
            count,
            refused,
            since,
            user,
            ..
        } = &sums[0]
        else {
            panic!("{sums:?}")
        };
        assert_eq!(
            (*count, *refused, *since, user.as_str()),
            (9, 3, at(1), "tech2")
        );
        // A quiet minute reports nothing; the next failure is "first" again.
        assert!(f.end_minute().is_empty());
        assert!(f.failed(ip(1), "tech", false, at(70)).is_some());
    }

    #[test]
    fn many_addresses_are_bounded() {
        let mut f = FailedLogins::default();
        let mut journaled = 0;
        for i in 0..10_000u32 {
            let name = "x".repeat(2 << 20);
            journaled += usize::from(f.failed(ip(i), &name, false, at(0)).is_some());
        }
        let sums = f.end_minute();
        journaled += sums.len();
        assert!(journaled <= 2 * (MAX_CLIENTS + 1), "{journaled}");
        let other = sums
            .iter()
            .find_map(|e| match e {
                EventKind::AdminLoginFailed {
                    client,
                    count,
                    user,
                    ..
                } if client == "other" => Some((*count, user.len())),
                _ => None,
            })
            .unwrap();
        // Every failure is counted somewhere: 16 reported at once, one
        // "other" at once, the rest summed under "other".
        assert_eq!(other.0, 10_000 - MAX_CLIENTS as u64 - 1);
        assert!(other.1 <= NAME);
    }
}
