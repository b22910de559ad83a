//! Request limits: per client IP on the sign-in forms and the token-style endpoints, and a
//! per-account delay after repeated wrong passwords. Every limit expires on its own, so no
//! one can lock an account out for longer than `maxDelay` from outside.
//!
//! Limits are kept in memory, per process: with several replicas each counts on its own.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request};

use crate::config::RateLimitConfig;

/// Entries kept before stale ones are swept.
const SWEEP_AT: usize = 10_000;

/// A generic cell rate algorithm limiter: `per_minute` requests a minute on average, with
/// bursts of up to a quarter of that (at least 5).
struct Gcra {
    interval: Duration,
    tolerance: Duration,
    cells: Mutex<HashMap<IpAddr, Instant>>,
}

impl Gcra {
    fn new(per_minute: u32) -> Self {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        let burst = (per_minute / 4).max(5);
        Self {
            interval,
            tolerance: interval * burst,
            cells: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` when `key` is over its limit.
    fn check(&self, key: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut cells = match self.cells.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cells.len() >= SWEEP_AT {
            cells.retain(|_, tat| *tat > now);
        }
        let tat = cells.get(&key).copied().unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        cells.insert(key, tat + self.interval);
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Instant,
}

pub struct Limits {
    config: RateLimitConfig,
    login: Gcra,
    token: Gcra,
    accounts: Mutex<HashMap<String, Failures>>,
}

impl Limits {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            config: config.clone(),
            login: Gcra::new(config.login_per_minute),
            token: Gcra::new(config.token_per_minute),
            accounts: Mutex::new(HashMap::new()),
        }
    }

    /// The address a request came from: the socket peer, or the first `X-Forwarded-For`
    /// entry when configured to trust it.
    pub fn client_ip<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        if self.config.trust_forwarded_for
            && let Some(ip) = forwarded_for(req.headers())
        {
            return Some(ip);
        }
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    }

    pub fn check_login(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        match ip {
            Some(ip) if self.config.enabled => self.login.check(ip, Instant::now()),
            _ => Ok(()),
        }
    }

    pub fn check_token(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        match ip {
            Some(ip) if self.config.enabled => self.token.check(ip, Instant::now()),
            _ => Ok(()),
        }
    }

    fn account_key(login: &str) -> String {
        login.trim().to_lowercase()
    }

    /// Whether a password attempt for `login` must wait.
    pub fn check_account(&self, login: &str) -> Result<(), Duration> {
        if !self.config.enabled {
            return Ok(());
        }
        let now = Instant::now();
        let accounts = match self.accounts.lock() {
            Ok(a) => a,
            Err(poisoned) => poisoned.into_inner(),
        };
        match accounts.get(&Self::account_key(login)) {
            Some(f) if f.blocked_until > now => Err(f.blocked_until - now),
            _ => Ok(()),
        }
    }

    /// A wrong password for `login`: after `failuresBeforeDelay` failures each further one
    /// doubles the wait, up to `maxDelay`. Failures are forgotten after a quiet period.
    pub fn record_failure(&self, login: &str) {
        if !self.config.enabled {
            return;
        }
        let now = Instant::now();
        let mut accounts = match self.accounts.lock() {
            Ok(a) => a,
            Err(poisoned) => poisoned.into_inner(),
        };
        let forget_after = self.config.max_delay * 2;
        if accounts.len() >= SWEEP_AT {
            accounts.retain(|_, f| now.duration_since(f.last) < forget_after);
        }
        let entry = accounts
            .entry(Self::account_key(login))
            .or_insert(Failures {
                count: 0,
                last: now,
                blocked_until: now,
            });
        if now.duration_since(entry.last) >= forget_after {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
        if entry.count >= self.config.failures_before_delay {
            let doublings = (entry.count - self.config.failures_before_delay).min(20);
            let delay = Duration::from_secs(1u64 << doublings).min(self.config.max_delay);
            entry.blocked_until = now + delay;
        }
    }

    pub fn record_success(&self, login: &str) {
        let mut accounts = match self.accounts.lock() {
            Ok(a) => a,
            Err(poisoned) => poisoned.into_inner(),
        };
        accounts.remove(&Self::account_key(login));
    }
}

fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get("x-forwarded-for")?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Seconds for a `Retry-After` header, rounded up.
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_a_burst_then_refuses() {
        let g = Gcra::new(60);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        let allowed = (0..100).filter(|_| g.check(ip, now).is_ok()).count();
        // A burst of 15 plus the first request.
        assert_eq!(allowed, 16);
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(g.check(other, now).is_ok());
        // One interval later one more request fits.
        assert!(g.check(ip, now + Duration::from_secs(1)).is_ok());
        assert!(g.check(ip, now + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn account_delay_doubles_and_is_capped() {
        let config = RateLimitConfig {
            failures_before_delay: 3,
            max_delay: Duration::from_secs(4),
            ..RateLimitConfig::default()
        };
        let l = Limits::new(&config);
        for _ in 0..2 {
            l.record_failure("Alice");
        }
        assert!(l.check_account("alice").is_ok());
        l.record_failure("alice");
        let wait = l.check_account("ALICE").unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        for _ in 0..10 {
            l.record_failure("alice");
        }
        let wait = l.check_account("alice").unwrap_err();
        assert!(wait <= Duration::from_secs(4) && wait > Duration::from_secs(3));
        l.record_success("alice");
        assert!(l.check_account("alice").is_ok());
    }

    #[test]
    fn disabled_limits_never_refuse() {
        let l = Limits::new(&RateLimitConfig {
            enabled: false,
            ..RateLimitConfig::default()
        });
        let ip = Some("10.0.0.1".parse().unwrap());
        for _ in 0..1000 {
            assert!(l.check_token(ip).is_ok());
        }
        for _ in 0..100 {
            l.record_failure("bob");
        }
        assert!(l.check_account("bob").is_ok());
    }
}
