//! A short memory of what the busiest endpoints read: users, and whether a grant was
//! revoked (userinfo and introspection check it for every request they answer; a login reads
//! the same user at the authorization and at the token endpoint).
//!
//! What is remembered must never outlive a revocation:
//!
//! - Every write in this process that could change an answer (revoking a grant, creating or
//!   updating a user) forgets everything at once, by moving the memo to a new generation.
//! - Revocations made by other processes (replicas, `idbridge sessions revoke`) also bump a
//!   counter in the database, in the same statement. The server reads that counter every
//!   [`SYNC_INTERVAL`] and moves to a new generation when it has changed. Nothing is answered
//!   from memory unless the counter was read within [`SYNC_VALID`], so a process that cannot
//!   reach its database (or never reads the counter, like the command line) always asks it.
//! - A value read from the database is kept only if no generation started while it was
//!   being read, so a read that raced a revocation is not remembered.
//!
//! Profile changes made by other replicas (a fresh login there) are seen after at most
//! [`TTL`]; revocations by other processes after at most [`SYNC_INTERVAL`] plus one read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::User;

/// How often a server reads the database's revocation counter.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// How long after the last successful read of the counter the memo may still answer.
pub const SYNC_VALID: Duration = Duration::from_millis(500);

/// How long one remembered answer lives.
pub const TTL: Duration = Duration::from_secs(1);

/// Entries kept at most; when full, the memo starts over (cheap, and only ever costs reads).
const CAPACITY: usize = 4096;

/// Milliseconds since `start`: times kept as integers fit in atomics.
fn millis_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

#[derive(Debug)]
pub struct Memo {
    start: Instant,
    generation: AtomicU64,
    /// The database's revocation counter as last read, or -1 before the first read.
    seen_counter: AtomicI64,
    /// Milliseconds since `start` of the last successful read of the counter, 0 for never.
    synced_at: AtomicU64,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// What an entry answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A user by id.
    User(String),
    /// Whether a grant was revoked.
    Grant(String),
    /// A user, and whether one of their grants was revoked.
    UserGrant(String, String),
}

#[derive(Debug, Clone)]
struct Entry {
    user: Option<User>,
    revoked: bool,
    generation: u64,
    stored_at: u64,
}

/// The generation a read started in; a value read under it may be remembered only if the
/// generation has not moved on since.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl Default for Memo {
    fn default() -> Self {
        Memo {
            start: Instant::now(),
            generation: AtomicU64::new(0),
            seen_counter: AtomicI64::new(-1),
            synced_at: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl Memo {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        match self.entries.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn usable(&self) -> bool {
        let synced = self.synced_at.load(Ordering::Acquire);
        synced != 0
            && millis_since(self.start).saturating_sub(synced) <= SYNC_VALID.as_millis() as u64
    }

    /// The remembered user (when the entry has one) and revocation state.
    pub fn get(&self, key: &Key) -> Option<(Option<User>, bool)> {
        if !self.usable() {
            return None;
        }
        let generation = self.generation.load(Ordering::Acquire);
        let now = millis_since(self.start);
        let entries = self.lock();
        let e = entries.get(key)?;
        let fresh =
            e.generation == generation && now.saturating_sub(e.stored_at) < TTL.as_millis() as u64;
        fresh.then(|| (e.user.clone(), e.revoked))
    }

    /// Call before reading what [`Memo::put`] will store.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::Acquire))
    }

    pub fn put(&self, ticket: Ticket, key: Key, user: Option<User>, revoked: bool) {
        let mut entries = self.lock();
        // Checked under the lock: `forget` bumps the generation before taking it.
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(
            key,
            Entry {
                user,
                revoked,
                generation: ticket.0,
                stored_at: millis_since(self.start),
            },
        );
    }

    /// Forgets everything: something that an answer depends on may have changed.
    pub fn forget(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.lock().clear();
    }

    /// Records a successful read of the database's revocation counter.
    pub fn synced(&self, counter: i64) {
        let previous = self.seen_counter.swap(counter, Ordering::AcqRel);
        if previous != counter {
            self.forget();
        }
        // Never 0, which means "never synced".
        self.synced_at
            .store(millis_since(self.start).max(1), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ug(u: &str, g: &str) -> Key {
        Key::UserGrant(u.into(), g.into())
    }

    fn grant(g: &str) -> Key {
        Key::Grant(g.into())
    }

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

    #[test]
    fn nothing_is_answered_before_the_counter_was_read() {
        let memo = Memo::default();
        let t = memo.ticket();
        memo.put(t, ug("u1", "g1"), Some(user("a")), false);
        assert!(memo.get(&ug("u1", "g1")).is_none());
        memo.synced(0);
        // The first read moved the generation on (-1 -> 0), so the earlier put is gone too.
        assert!(memo.get(&ug("u1", "g1")).is_none());
        let t = memo.ticket();
        memo.put(t, ug("u1", "g1"), Some(user("a")), false);
        let (u, revoked) = memo.get(&ug("u1", "g1")).unwrap();
        assert_eq!(u.unwrap().username, "a");
        assert!(!revoked);
        assert!(memo.get(&ug("u1", "g2")).is_none());
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let memo = Memo::default();
        memo.synced(7);
        let t = memo.ticket();
        memo.forget(); // a revocation while the read was in flight
        memo.put(t, ug("u1", "g1"), Some(user("a")), false);
        assert!(memo.get(&ug("u1", "g1")).is_none());
    }

    #[test]
    fn a_changed_counter_forgets_and_an_unchanged_one_does_not() {
        let memo = Memo::default();
        memo.synced(3);
        memo.put(memo.ticket(), grant("g1"), None, false);
        memo.synced(3);
        assert_eq!(memo.get(&grant("g1")), Some((None, false)));
        memo.synced(4);
        assert!(memo.get(&grant("g1")).is_none());
    }

    #[test]
    fn a_memo_that_stopped_syncing_stops_answering() {
        let memo = Memo::default();
        memo.synced(1);
        memo.put(memo.ticket(), grant("g1"), None, false);
        // Pretend the last read of the counter is older than SYNC_VALID.
        memo.synced_at.store(1, Ordering::Release);
        std::thread::sleep(SYNC_VALID + Duration::from_millis(20));
        assert!(memo.get(&grant("g1")).is_none());
    }
}
