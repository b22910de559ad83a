//! A short memory of what the busiest endpoints read: users, whether a grant was revoked
//! (userinfo and introspection check it for every request they answer; a login reads the same
//! user at the authorization and at the token endpoint), and, on backends that serve a single
//! process, browser sessions.
//!
//! What is remembered must never outlive a change that matters:
//!
//! - Every write in this process that could change an answer forgets it before the write
//!   returns: revoking a grant or updating a user forgets everything, saving or deleting a
//!   session forgets that session.
//! - Revocations made by other processes (replicas, `idbridge sessions revoke`) also raise a
//!   counter in the database, in the same transaction. The server reads that counter every
//!   [`SYNC_INTERVAL`] and forgets everything when it has changed. Nothing is answered from
//!   memory unless the counter was read within [`SYNC_VALID`], so a process that cannot reach
//!   its database (or never reads the counter, like the command line) always asks it.
//! - A value read from the database is kept only if nothing it depends on was forgotten while
//!   it was being read (the read's [`Ticket`] is older than the forgetting), so a read that
//!   raced a write is not remembered.
//!
//! Profile changes made by other replicas (a fresh sign-in there) are seen after at most
//! [`TTL`]; revocations by other processes after at most [`SYNC_INTERVAL`] plus one read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{SessionRecord, User};

/// How often a server reads the database's revocation counter.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// How long after the last successful read of the counter the memo may still answer.
pub const SYNC_VALID: Duration = Duration::from_millis(500);

/// How long one remembered answer lives.
pub const TTL: Duration = Duration::from_secs(1);

/// Entries kept at most; when full, the memo starts over (cheap, and only ever costs reads).
const CAPACITY: usize = 4096;

/// What an entry answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A user by id.
    User(String),
    /// Whether a grant was revoked.
    Grant(String),
    /// A user, and whether one of their grants was revoked.
    UserGrant(String, String),
    /// A browser session by id.
    Session(String),
}

/// A remembered answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remembered {
    User(User),
    Grant { revoked: bool },
    UserGrant { user: User, revoked: bool },
    Session(SessionRecord),
}

/// When a read started, in the memo's own count of forgettings. What the read found may be
/// remembered only if nothing it depends on was forgotten since.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

#[derive(Debug)]
struct Entry {
    /// `None` marks a key forgotten at `ticket`: reads that started before cannot store it.
    value: Option<Remembered>,
    ticket: u64,
    stored_at: u64,
}

#[derive(Debug)]
pub struct Memo {
    start: Instant,
    /// Raised by every forgetting; a read takes the current value as its ticket.
    ticks: AtomicU64,
    /// Reads whose ticket is older than this started before the last `forget`.
    valid_from: AtomicU64,
    /// The database's revocation counter as last read, or -1 before the first read.
    seen_counter: AtomicI64,
    /// Milliseconds since `start` of the last successful read of the counter, 0 for never.
    synced_at: AtomicU64,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Default for Memo {
    fn default() -> Self {
        Memo {
            start: Instant::now(),
            ticks: AtomicU64::new(0),
            valid_from: AtomicU64::new(0),
            seen_counter: AtomicI64::new(-1),
            synced_at: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl Memo {
    /// Milliseconds since the memo was made: times kept as integers fit in atomics.
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        match self.entries.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn usable(&self) -> bool {
        let synced = self.synced_at.load(Ordering::Acquire);
        synced != 0 && self.now().saturating_sub(synced) <= SYNC_VALID.as_millis() as u64
    }

    /// The remembered answer for `key`, if there is a fresh one.
    pub fn get(&self, key: &Key) -> Option<Remembered> {
        if !self.usable() {
            return None;
        }
        let now = self.now();
        let entries = self.lock();
        let e = entries.get(key)?;
        if now.saturating_sub(e.stored_at) >= TTL.as_millis() as u64 {
            return None;
        }
        e.value.clone()
    }

    /// Call before reading what [`Memo::put`] will store.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.ticks.load(Ordering::Acquire))
    }

    /// Remembers what a read that started at `ticket` found, unless something it depends on
    /// was forgotten since.
    pub fn put(&self, ticket: Ticket, key: Key, value: Remembered) {
        let mut entries = self.lock();
        // Checked under the lock, which every forgetting holds.
        if ticket.0 < self.valid_from.load(Ordering::Acquire) {
            return;
        }
        if entries.get(&key).is_some_and(|e| e.ticket > ticket.0) {
            return;
        }
        if entries.len() >= CAPACITY {
            // Starting over also drops the marks of forgotten keys, so it must count as
            // forgetting everything, this read included.
            self.forget_locked(&mut entries);
            return;
        }
        entries.insert(
            key,
            Entry {
                value: Some(value),
                ticket: ticket.0,
                stored_at: self.now(),
            },
        );
    }

    fn forget_locked(&self, entries: &mut HashMap<Key, Entry>) {
        let t = self.ticks.fetch_add(1, Ordering::AcqRel) + 1;
        self.valid_from.store(t, Ordering::Release);
        entries.clear();
    }

    /// Forgets everything: something that answers depend on may have changed.
    pub fn forget(&self) {
        let mut entries = self.lock();
        self.forget_locked(&mut entries);
    }

    /// Forgets one key.
    pub fn forget_key(&self, key: Key) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            self.forget_locked(&mut entries);
            return;
        }
        let t = self.ticks.fetch_add(1, Ordering::AcqRel) + 1;
        entries.insert(
            key,
            Entry {
                value: None,
                ticket: t,
                stored_at: self.now(),
            },
        );
    }

    /// Records a successful read of the database's revocation counter.
    pub fn synced(&self, counter: i64) {
        let previous = self.seen_counter.swap(counter, Ordering::AcqRel);
        if previous != counter {
            self.forget();
        }
        // Never 0, which means "never synced".
        self.synced_at.store(self.now().max(1), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> User {
        User {
            id: "u1".into(),
            connector_id: "local".into(),
            upstream_id: "x".into(),
            username: name.into(),
            display_name: None,
            email: None,
            email_verified: false,
            phone: None,
            picture: None,
            groups: vec![],
            connector_data: None,
            created_at: 0,
            last_login_at: 0,
        }
    }

    fn ug(u: &str, g: &str) -> Key {
        Key::UserGrant(u.into(), g.into())
    }

    fn grant(g: &str) -> Key {
        Key::Grant(g.into())
    }

    fn alive(name: &str) -> Remembered {
        Remembered::UserGrant {
            user: user(name),
            revoked: false,
        }
    }

    #[test]
    fn nothing_is_answered_before_the_counter_was_read() {
        let memo = Memo::default();
        memo.put(memo.ticket(), ug("u1", "g1"), alive("a"));
        assert!(memo.get(&ug("u1", "g1")).is_none());
        memo.synced(0);
        // The first read moved on (-1 -> 0), so the earlier put is gone too.
        assert!(memo.get(&ug("u1", "g1")).is_none());
        memo.put(memo.ticket(), ug("u1", "g1"), alive("a"));
        assert_eq!(memo.get(&ug("u1", "g1")), Some(alive("a")));
        assert!(memo.get(&ug("u1", "g2")).is_none());
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let memo = Memo::default();
        memo.synced(7);
        let t = memo.ticket();
        memo.forget(); // a revocation while the read was in flight
        memo.put(t, ug("u1", "g1"), alive("a"));
        assert!(memo.get(&ug("u1", "g1")).is_none());
    }

    #[test]
    fn a_forgotten_key_refuses_older_reads_and_accepts_newer_ones() {
        let memo = Memo::default();
        memo.synced(1);
        let session = |data: &str| {
            Remembered::Session(SessionRecord {
                id: "s1".into(),
                user_id: None,
                data: data.into(),
                expires_at: 10,
            })
        };
        let key = Key::Session("s1".into());
        let before = memo.ticket();
        memo.put(
            memo.ticket(),
            grant("g1"),
            Remembered::Grant { revoked: false },
        );
        memo.forget_key(key.clone()); // the session was saved while `before` was reading
        memo.put(before, key.clone(), session("old"));
        assert!(memo.get(&key).is_none());
        // Other keys are untouched.
        assert!(memo.get(&grant("g1")).is_some());
        let after = memo.ticket();
        memo.put(after, key.clone(), session("new"));
        assert_eq!(memo.get(&key), Some(session("new")));
        // A late read cannot replace a newer value either.
        memo.put(before, key.clone(), session("old"));
        assert_eq!(memo.get(&key), Some(session("new")));
    }

    #[test]
    fn a_changed_counter_forgets_and_an_unchanged_one_does_not() {
        let memo = Memo::default();
        memo.synced(3);
        memo.put(
            memo.ticket(),
            grant("g1"),
            Remembered::Grant { revoked: false },
        );
        memo.synced(3);
        assert_eq!(
            memo.get(&grant("g1")),
            Some(Remembered::Grant { revoked: false })
        );
        memo.synced(4);
        assert!(memo.get(&grant("g1")).is_none());
    }

    #[test]
    fn a_memo_that_stopped_syncing_stops_answering() {
        let memo = Memo::default();
        memo.synced(1);
        memo.put(
            memo.ticket(),
            grant("g1"),
            Remembered::Grant { revoked: false },
        );
        // Pretend the last read of the counter is older than SYNC_VALID.
        memo.synced_at.store(1, Ordering::Release);
        std::thread::sleep(SYNC_VALID + Duration::from_millis(20));
        assert!(memo.get(&grant("g1")).is_none());
    }
}
