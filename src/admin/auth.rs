//! Who may use the admin port, sans-IO: users with argon2 password hashes,
//! API tokens stored as SHA-256 hashes, roles, sessions with CSRF tokens,
//! and the login lockout. Time (`now`) and randomness (session ids, CSRF
//! tokens, salts) are passed in; nothing here reads a clock.
//!
//! Guarantees:
//! - no built-in user and no default password: with no users configured,
//!   every login fails;
//! - an unknown user costs one argon2 verification like a known one, so the
//!   answer time does not tell which user names exist;
//! - failed logins back off exponentially per (user name, client address)
//!   and per client address, never per user name alone, so an outsider
//!   cannot lock a named operator out (see [`Lockout`]);
//! - a session ends when its user's password changes or the user is
//!   removed (the session holds a fingerprint of the password hash it was
//!   opened with, compared on every request);
//! - a session ends after `idle` without use or `max` after login;
//! - tokens and passwords are never stored in clear.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// What a user or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Read everything and act on doors.
    Operator,
}

impl Role {
    /// `viewer` or `operator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, AuthError> {
        match s {
            "viewer" => Ok(Self::Viewer),
            "operator" => Ok(Self::Operator),
            _ => Err(AuthError::UnknownRole(s.to_owned())),
        }
    }
}

/// Why a role or a password hash could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// A role name in a users file or on the command line is neither
    /// `viewer` nor `operator`: there are only two roles.
    #[error("role must be viewer or operator, not {0:?}")]
    UnknownRole(String),
    /// argon2 refused the salt or the password (e.g. too long). Not a
    /// `#[source]`: the `password-hash` crate is built without `std`, so
    /// its error is no `std::error::Error`.
    #[error("{0}")]
    Hash(argon2::password_hash::Error),
}

/// A local user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// PHC string of an argon2 hash (`$argon2id$v=19$…`), as written by
    /// `portier admin passwd`.
    pub password_hash: String,
}

/// An API token (for `portier status`, Prometheus, scripts), sent as
/// `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Name, for events.
    pub name: String,
    /// Role.
    pub role: Role,
    /// SHA-256 of the token, 64 hex digits (tokens are 256-bit random, so a
    /// fast hash is enough), as written by `portier admin token`.
    pub token_sha256: String,
}

/// The users file (`[admin] users_file`), also the shape of inline users.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// Users.
    #[serde(default, rename = "user")]
    pub users: Vec<UserEntry>,
    /// Tokens.
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenEntry>,
}

impl UsersFile {
    /// Add or replace a user.
    pub fn set_user(&mut self, user: UserEntry) {
        self.users.retain(|u| u.name != user.name);
        self.users.push(user);
    }

    /// Add or replace a token.
    pub fn set_token(&mut self, token: TokenEntry) {
        self.tokens.retain(|t| t.name != token.name);
        self.tokens.push(token);
    }
}

/// Hash a password with argon2id (default parameters) and this 16-byte
/// salt.
pub fn hash_password(password: &str, salt: &[u8; 16]) -> Result<String, AuthError> {
    let salt = SaltString::encode_b64(salt).map_err(AuthError::Hash)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(AuthError::Hash)
}

/// A fresh login for a demo or a test: a user with a random 20-character
/// password (from `random`), and that password to show once.
pub fn generated_login(
    name: &str,
    role: Role,
    random: &[u8; 20],
    salt: &[u8; 16],
) -> Result<(UserEntry, String), AuthError> {
    // 20 characters from an alphabet without look-alikes (0/O, 1/l/I).
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let password: String = random
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    let entry = UserEntry {
        name: name.to_owned(),
        role,
        password_hash: hash_password(&password, salt)?,
    };
    Ok((entry, password))
}

/// Check a password against a PHC hash string. A malformed hash never
/// matches. Allocates the hash's memory for this one check: for the CLI
/// and tests; the daemon verifies with [`verify_password_in`].
pub fn verify_password(hash: &str, password: &str) -> bool {
    verify_password_in(hash, password, &mut HashMemory::default())
}

/// The most memory a stored hash may ask for, KiB (64 MiB): a users file
/// with a larger `m=` is refused at verification, so a bad file cannot
/// make the daemon allocate without bound. argon2id's default (and what
/// `portier admin passwd` writes) is 19 MiB, `m=19456,t=2,p=1`.
pub const MAX_HASH_MEMORY_KIB: u32 = 64 * 1024;

/// argon2's working memory, kept between checks: a check allocates
/// nothing, and the memory is the same pages every time instead of a new
/// 19 MiB that the allocator may keep per thread (issue: a few failed
/// logins took the daemon from 17 MB to 894 MB). Grows to the largest
/// `m=` seen, at most [`MAX_HASH_MEMORY_KIB`].
#[derive(Default)]
pub struct HashMemory {
    blocks: Vec<argon2::Block>,
}

impl std::fmt::Debug for HashMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HashMemory({} KiB)", self.blocks.len())
    }
}

impl HashMemory {
    /// Memory for `params`, or `None` past the cap.
    fn for_params(&mut self, params: &argon2::Params) -> Option<&mut [argon2::Block]> {
        if params.m_cost() > MAX_HASH_MEMORY_KIB {
            return None;
        }
        let n = params.block_count();
        if self.blocks.len() < n {
            self.blocks.resize(n, argon2::Block::default());
        }
        Some(&mut self.blocks[..n])
    }

    /// KiB held.
    pub fn kib(&self) -> usize {
        self.blocks.len()
    }
}

/// Check a password against a PHC hash string in `memory` (argon2id,
/// argon2i or argon2d with the hash's own parameters; constant-time
/// comparison). A malformed hash, or one over the memory cap, never
/// matches.
pub fn verify_password_in(hash: &str, password: &str, memory: &mut HashMemory) -> bool {
    use argon2::{Algorithm, Argon2, Params, Version};
    let Ok(h) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(h.algorithm), Params::try_from(&h))
    else {
        return false;
    };
    let version = match h.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let Some(blocks) = memory.for_params(&params) else {
        return false;
    };
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, out, blocks)
        .is_ok()
        && same(out, expected.as_bytes())
}

/// The SHA-256 of a token, as stored in [`TokenEntry::token_sha256`].
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh token text from 32 random bytes.
pub fn token_text(random: &[u8; 32]) -> String {
    format!("ptk_{}", hex::encode(random))
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Compare two secrets without an early exit.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    same(a.as_bytes(), b.as_bytes())
}

/// The known users and tokens.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    users: Vec<UserEntry>,
    tokens: Vec<TokenEntry>,
    /// A valid hash to verify against for unknown users (equal cost).
    decoy: String,
}

/// A fingerprint of a user's password hash (SHA-256 of the PHC string):
/// a session opened with one credential ends when the users file holds
/// another (password changed, user removed and added again), also when
/// the change was made by `portier admin passwd` while the daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential([u8; 32]);

impl Credential {
    fn of(user: &UserEntry) -> Self {
        Self(Sha256::digest(user.password_hash.as_bytes()).into())
    }
}

/// Result of a password check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordCheck {
    /// Right user and password: the role, and the credential to tie the
    /// session to.
    Ok(Role, Credential),
    /// Unknown user or wrong password (not told apart).
    Wrong,
}

impl Directory {
    /// A directory over these users and tokens; `decoy_salt` seeds the hash
    /// verified for unknown users.
    pub fn new(files: &[&UsersFile], decoy_salt: &[u8; 16]) -> Self {
        let mut d = Self {
            decoy: hash_password("decoy password, never valid", decoy_salt).unwrap_or_default(),
            ..Self::default()
        };
        for f in files {
            d.users.extend(f.users.iter().cloned());
            d.tokens.extend(f.tokens.iter().cloned());
        }
        d
    }

    /// Number of users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Number of tokens.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Check a login (slow: one argon2 verification, always) in `memory`.
    pub fn check_password(
        &self,
        user: &str,
        password: &str,
        memory: &mut HashMemory,
    ) -> PasswordCheck {
        match self.users.iter().find(|u| u.name == user) {
            Some(u) if verify_password_in(&u.password_hash, password, memory) => {
                PasswordCheck::Ok(u.role, Credential::of(u))
            }
            Some(_) => PasswordCheck::Wrong,
            None => {
                let _ = verify_password_in(&self.decoy, password, memory);
                PasswordCheck::Wrong
            }
        }
    }

    /// The name and role of the token, if it is known.
    pub fn check_token(&self, token: &str) -> Option<(String, Role)> {
        let h = token_hash(token);
        self.tokens
            .iter()
            .find(|t| same(t.token_sha256.to_ascii_lowercase().as_bytes(), h.as_bytes()))
            .map(|t| (t.name.clone(), t.role))
    }

    /// The role of a user (to refresh a session's role after a change).
    pub fn role_of(&self, user: &str) -> Option<Role> {
        self.users.iter().find(|u| u.name == user).map(|u| u.role)
    }

    /// The user's role and the fingerprint of their current password
    /// hash; `None` when the user is gone.
    pub fn credential_of(&self, user: &str) -> Option<(Role, Credential)> {
        self.users
            .iter()
            .find(|u| u.name == user)
            .map(|u| (u.role, Credential::of(u)))
    }
}

/// Login back-off settings. The field names are those of the old hard
/// lockout, so existing configs keep working; their meaning is now a
/// back-off (see [`Lockout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutConfig {
    /// Failed logins for one user name *from one client address* inside
    /// `window_secs` before further attempts from there must wait.
    pub max_failures: u32,
    /// Failed logins from one client address (any names) inside
    /// `window_secs` before further attempts from it must wait.
    pub max_failures_per_address: u32,
    /// A subject quiet (no failure, no wait running) for this long is
    /// forgotten, seconds.
    pub window_secs: u64,
    /// The longest wait, seconds (the back-off doubles up to it).
    pub lockout_secs: u64,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            max_failures_per_address: 10,
            window_secs: 900,
            lockout_secs: 900,
        }
    }
}

/// What is counted: one user name from one client address, or one client
/// address. Deliberately not a user name alone: counting a name across all
/// addresses would let anyone on the network lock a named operator out by
/// failing on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A user name as typed, from this address.
    UserAt(String, IpAddr),
    /// A client address.
    Address(IpAddr),
}

#[derive(Debug)]
struct Record {
    /// Failures since the subject was last quiet for a whole window.
    failures: u32,
    last: Instant,
    wait_until: Option<Instant>,
}

impl Record {
    /// Quiet from here on: the last failure, or the end of its wait (a
    /// wait longer than the window must not reset the count).
    fn quiet_since(&self) -> Instant {
        self.wait_until.map_or(self.last, |w| w.max(self.last))
    }
}

/// Exponential back-off of failed logins, per (user name, client address)
/// and per client address.
///
/// Once a subject has `limit` failures without a quiet window between
/// them, every further failure makes the next attempt wait 1 s, 2 s, 4 s,
/// … up to `lockout_secs`. Attempts during a wait are refused without checking the
/// password and are not counted. A guesser at address A slows only itself:
/// the same user logs in from address B at once. Distributed guessing at
/// one name is bounded by the per-address back-off, the argon2 cost (two
/// checks at a time), the 10-character minimum password, and every failure
/// is journaled (`admin_login` `failed`) for the control room to see.
#[derive(Debug)]
pub struct Lockout {
    cfg: LockoutConfig,
    records: HashMap<Subject, Record>,
}

/// Most subjects tracked at once; beyond, the quietest are forgotten.
const MAX_SUBJECTS: usize = 10_000;

impl Lockout {
    /// An empty table.
    pub fn new(cfg: LockoutConfig) -> Self {
        Self {
            cfg,
            records: HashMap::new(),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.cfg.window_secs)
    }

    fn limit(&self, s: &Subject) -> u32 {
        match s {
            Subject::UserAt(..) => self.cfg.max_failures,
            Subject::Address(_) => self.cfg.max_failures_per_address,
        }
        .max(1)
    }

    fn subjects(user: &str, addr: IpAddr) -> [Subject; 2] {
        [
            Subject::UserAt(user.to_owned(), addr),
            Subject::Address(addr),
        ]
    }

    /// Until when a login for `user` from `addr` must wait, if it must.
    pub fn locked(&self, user: &str, addr: IpAddr, now: Instant) -> Option<Instant> {
        Self::subjects(user, addr)
            .iter()
            .filter_map(|s| self.records.get(s)?.wait_until)
            .filter(|&until| until > now)
            .max()
    }

    /// Count a failed login; returns whether the next attempt (of this
    /// user from this address, or of this address) must now wait.
    pub fn failed(&mut self, user: &str, addr: IpAddr, now: Instant) -> bool {
        self.prune(now);
        let window = self.window();
        let longest = Duration::from_secs(self.cfg.lockout_secs);
        let mut waits = false;
        for s in Self::subjects(user, addr) {
            let limit = self.limit(&s);
            let r = self.records.entry(s).or_insert(Record {
                failures: 0,
                last: now,
                wait_until: None,
            });
            if now.saturating_duration_since(r.quiet_since()) >= window {
                r.failures = 0;
            }
            r.failures = r.failures.saturating_add(1);
            r.last = now;
            let n = r.failures;
            if n >= limit {
                let doublings = (n - limit).min(30);
                let wait = Duration::from_secs(1u64 << doublings).min(longest);
                r.wait_until = Some(now + wait);
                waits = true;
            }
        }
        waits
    }

    /// A successful login clears this user's failures from this address
    /// (not the address's: one valid account must not reset guessing at
    /// others).
    pub fn succeeded(&mut self, user: &str, addr: IpAddr) {
        self.records.remove(&Subject::UserAt(user.to_owned(), addr));
    }

    fn prune(&mut self, now: Instant) {
        let window = self.window();
        self.records
            .retain(|_, r| now.saturating_duration_since(r.quiet_since()) < window);
        if self.records.len() >= MAX_SUBJECTS {
            // Keep waiting subjects; forget the others.
            self.records
                .retain(|_, r| r.wait_until.is_some_and(|u| u > now));
        }
    }
}

/// Session lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// A session ends after this long without a request, seconds.
    pub idle_secs: u64,
    /// A session ends this long after login, seconds.
    pub max_secs: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_secs: 30 * 60,
            max_secs: 12 * 3600,
        }
    }
}

/// One logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// User name.
    pub user: String,
    /// Role at login.
    pub role: Role,
    /// The CSRF token every form and cookie-authenticated POST must carry.
    pub csrf: String,
    /// The credential the session was opened with.
    pub credential: Credential,
    created: Instant,
    last_seen: Instant,
}

/// Who a new session is for.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// User name.
    pub user: &'a str,
    /// Role at login.
    pub role: Role,
    /// The credential checked.
    pub credential: Credential,
}

/// Live sessions, keyed by the SHA-256 of the cookie value (a leaked
/// table does not give away cookies).
#[derive(Debug)]
pub struct Sessions {
    cfg: SessionConfig,
    map: HashMap<String, Session>,
}

/// Most sessions at once; the oldest go first beyond.
const MAX_SESSIONS: usize = 1_000;

impl Sessions {
    /// No sessions.
    pub fn new(cfg: SessionConfig) -> Self {
        Self {
            cfg,
            map: HashMap::new(),
        }
    }

    /// Start a session for `cookie` (random, from the caller).
    pub fn create(&mut self, cookie: &str, csrf: String, login: Login<'_>, now: Instant) {
        self.expire(now);
        if self.map.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            self.map.remove(&oldest);
        }
        self.map.insert(
            token_hash(cookie),
            Session {
                user: login.user.to_owned(),
                role: login.role,
                csrf,
                credential: login.credential,
                created: now,
                last_seen: now,
            },
        );
    }

    /// The live session for this cookie, marked as used now.
    pub fn touch(&mut self, cookie: &str, now: Instant) -> Option<Session> {
        let key = token_hash(cookie);
        let alive = self.map.get(&key).is_some_and(|s| self.alive(s, now));
        if !alive {
            self.map.remove(&key);
            return None;
        }
        let s = self.map.get_mut(&key)?;
        s.last_seen = now;
        Some(s.clone())
    }

    /// End the session for this cookie.
    pub fn remove(&mut self, cookie: &str) {
        self.map.remove(&token_hash(cookie));
    }

    /// End every session of this user (password or role changed, removed).
    pub fn remove_user(&mut self, user: &str) {
        self.map.retain(|_, s| s.user != user);
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No live sessions.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.last_seen) < Duration::from_secs(self.cfg.idle_secs)
            && now.saturating_duration_since(s.created) < Duration::from_secs(self.cfg.max_secs)
    }

    fn expire(&mut self, now: Instant) {
        let cfg = self.cfg;
        self.map.retain(|_, s| {
            now.saturating_duration_since(s.last_seen) < Duration::from_secs(cfg.idle_secs)
                && now.saturating_duration_since(s.created) < Duration::from_secs(cfg.max_secs)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_clock::epoch as base;

    fn dir() -> Directory {
        let f = UsersFile {
            users: vec![
                UserEntry {
                    name: "tech".into(),
                    role: Role::Operator,
                    password_hash: hash_password("correct horse", &[1; 16]).unwrap(),
                },
                UserEntry {
                    name: "guard".into(),
                    role: Role::Viewer,
                    password_hash: hash_password("battery staple", &[2; 16]).unwrap(),
                },
            ],
            tokens: vec![TokenEntry {
                name: "prometheus".into(),
                role: Role::Viewer,
                token_sha256: token_hash(&token_text(&[7; 32])),
            }],
        };
        Directory::new(&[&f], &[9; 16])
    }

    #[test]
    fn passwords_and_tokens() {
        let d = dir();
        let mut m = HashMemory::default();
        let (tech, guard) = (
            d.credential_of("tech").unwrap(),
            d.credential_of("guard").unwrap(),
        );
        assert_eq!(
            d.check_password("tech", "correct horse", &mut m),
            PasswordCheck::Ok(Role::Operator, tech.1)
        );
        assert_eq!(
            d.check_password("guard", "battery staple", &mut m),
            PasswordCheck::Ok(Role::Viewer, guard.1)
        );
        assert_ne!(tech.1, guard.1);
        assert_eq!(d.credential_of("nobody"), None);
        assert_eq!(
            d.check_password("tech", "battery staple", &mut m),
            PasswordCheck::Wrong
        );
        assert_eq!(
            d.check_password("nobody", "correct horse", &mut m),
            PasswordCheck::Wrong
        );
        assert_eq!(d.check_password("tech", "", &mut m), PasswordCheck::Wrong);
        assert_eq!(
            d.check_token(&token_text(&[7; 32])),
            Some(("prometheus".into(), Role::Viewer))
        );
        assert_eq!(d.check_token(&token_text(&[8; 32])), None);
        assert_eq!(d.check_token(""), None);
        // No users, no way in.
        let empty = Directory::new(&[], &[0; 16]);
        assert_eq!(empty.check_password("", "", &mut m), PasswordCheck::Wrong);
        assert_eq!(
            empty.check_password("admin", "admin", &mut m),
            PasswordCheck::Wrong
        );
        assert!(!verify_password("not a hash", "x"));
        let (u, pw) = generated_login("demo", Role::Operator, &[5; 20], &[6; 16]).unwrap();
        assert_eq!(pw.len(), 20);
        assert!(verify_password(&u.password_hash, &pw));
        // The memory is kept, not grown, from check to check.
        assert_eq!(m.kib(), 19 * 1024);
    }

    #[test]
    fn hashes_of_the_argon2_crate_verify_in_kept_memory() {
        use argon2::password_hash::PasswordVerifier;
        let mut m = HashMemory::default();
        let salt = SaltString::encode_b64(&[3; 16]).unwrap();
        for (alg, params) in [
            (argon2::Algorithm::Argon2id, argon2::Params::default()),
            (
                argon2::Algorithm::Argon2i,
                argon2::Params::new(8 * 1024, 3, 1, Some(32)).unwrap(),
            ),
            (
                argon2::Algorithm::Argon2d,
                argon2::Params::new(1024, 1, 2, Some(16)).unwrap(),
            ),
        ] {
            let a = argon2::Argon2::new(alg, argon2::Version::V0x13, params);
            let h = a.hash_password(b"pw", &salt).unwrap().to_string();
            assert!(
                a.verify_password(b"pw", &PasswordHash::new(&h).unwrap())
                    .is_ok()
            );
            assert!(verify_password_in(&h, "pw", &mut m), "{h}");
            assert!(!verify_password_in(&h, "pX", &mut m), "{h}");
        }
        // The largest asked for so far, never more.
        assert_eq!(m.kib(), 19 * 1024);
        // Past the cap: never matches, nothing allocated.
        let big = argon2::Params::new(MAX_HASH_MEMORY_KIB + 8, 1, 1, None).unwrap();
        let h = format!(
            "$argon2id$v=19$m={},t=1,p=1$AwMDAwMDAwMDAwMDAwMDAw$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            big.m_cost()
        );
        assert!(PasswordHash::new(&h).is_ok());
        assert!(!verify_password_in(&h, "pw", &mut m));
        assert_eq!(m.kib(), 19 * 1024);
    }

    #[test]
    fn backoff_per_user_and_address_never_per_name_alone() {
        let t0 = base();
        let s = Duration::from_secs;
        let cfg = LockoutConfig {
            max_failures: 3,
            max_failures_per_address: 5,
            window_secs: 60,
            lockout_secs: 300,
        };
        let mut l = Lockout::new(cfg);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(!l.failed("tech", a, t0));
        assert!(!l.failed("tech", a, t0 + s(1)));
        assert_eq!(l.locked("tech", a, t0 + s(2)), None);
        // The third failure of tech from A: the next try from A waits 1 s.
        assert!(l.failed("tech", a, t0 + s(2)));
        assert_eq!(l.locked("tech", a, t0 + s(2)), Some(t0 + s(3)));
        assert_eq!(l.locked("tech", a, t0 + s(3)), None);
        // Each further failure doubles the wait: 2 s, 4 s.
        assert!(l.failed("tech", a, t0 + s(3)));
        assert_eq!(l.locked("tech", a, t0 + s(3)), Some(t0 + s(5)));
        // Five failures from A in all: the address waits too, for any name.
        assert!(l.failed("tech", a, t0 + s(5)));
        assert_eq!(l.locked("tech", a, t0 + s(5)), Some(t0 + s(9)));
        assert_eq!(l.locked("guard", a, t0 + s(5)), Some(t0 + s(6)));
        // Tech from B is not held up at all, and neither is anyone else.
        assert_eq!(l.locked("tech", b, t0 + s(5)), None);
        assert_eq!(l.locked("guard", b, t0 + s(5)), None);

        // The back-off is capped at lockout_secs.
        let mut l = Lockout::new(cfg);
        let mut t = t0;
        for _ in 0..40 {
            l.failed("op", a, t);
            t = l.locked("op", a, t).unwrap_or(t);
        }
        l.failed("op", a, t);
        let wait = l.locked("op", a, t).unwrap().duration_since(t);
        assert_eq!(wait, s(300));
        assert_eq!(l.locked("op", b, t), None);

        // Failures with a quiet window between them do not add up.
        let mut l = Lockout::new(cfg);
        for i in 0..10 {
            assert!(!l.failed("x", a, t0 + s(i * 61)));
        }
        // A success clears the user's count at that address, not the
        // address's.
        let mut l = Lockout::new(cfg);
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(!l.failed(name, a, t0 + s(i as u64)));
        }
        assert!(l.failed("e", a, t0 + s(4)));
        l.succeeded("e", a);
        assert!(l.locked("zzz", a, t0 + s(4)).is_some());
    }

    #[test]
    fn sessions_expire() {
        let t0 = base();
        let mut s = Sessions::new(SessionConfig {
            idle_secs: 60,
            max_secs: 300,
        });
        let login = |user| Login {
            user,
            role: Role::Operator,
            credential: Credential([1; 32]),
        };
        s.create("cookie", "csrf".into(), login("tech"), t0);
        let got = s.touch("cookie", t0 + Duration::from_secs(59)).unwrap();
        assert_eq!(
            (got.user.as_str(), got.role, got.csrf.as_str()),
            ("tech", Role::Operator, "csrf")
        );
        assert!(s.touch("other", t0).is_none());
        // Used every 50 s it lives until the maximum age.
        for i in 2..6 {
            assert!(
                s.touch("cookie", t0 + Duration::from_secs(i * 50))
                    .is_some()
            );
        }
        assert!(s.touch("cookie", t0 + Duration::from_secs(300)).is_none());
        // Idle expiry.
        s.create("c2", "x".into(), login("guard"), t0);
        assert!(s.touch("c2", t0 + Duration::from_secs(61)).is_none());
        s.create("c3", "x".into(), login("guard"), t0);
        s.remove_user("guard");
        assert!(s.is_empty());
    }
}
