//! The one source of time. Protocol code receives `now` from here as a parameter; tests use a
//! manual clock to move time forward without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::storage::Timestamp;

#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Seconds added to the system time; shared by every clone.
    offset: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// Unix time in seconds.
    pub fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        secs + self.offset.load(Ordering::Relaxed)
    }

    /// Moves this clock (and every clone of it) forward. Meant for tests.
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }
}
