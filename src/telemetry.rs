//! Prometheus metrics. A leaf like `config`: any layer may record, only the HTTP layer renders.
//!
//! Names and labels are documented in docs/operations.md; keep the two in step.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const LOGINS: &str = "idbridge_logins_total";
pub const TOKENS_ISSUED: &str = "idbridge_tokens_issued_total";
pub const REFRESH_REUSE: &str = "idbridge_refresh_reuse_detected_total";
pub const UPSTREAM_DURATION: &str = "idbridge_upstream_request_duration_seconds";
pub const HTTP_DURATION: &str = "idbridge_http_request_duration_seconds";
pub const ACTIVE_SESSIONS: &str = "idbridge_active_sessions";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once and returns the handle that renders it. `None`
/// when another recorder was installed first (metrics are then not exported).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(LOGINS, "Sign-in attempts by connector and outcome.");
    metrics::describe_counter!(TOKENS_ISSUED, "Token responses by grant type and client.");
    metrics::describe_counter!(
        REFRESH_REUSE,
        "Rotated refresh tokens presented again (family revoked)."
    );
    metrics::describe_histogram!(
        UPSTREAM_DURATION,
        metrics::Unit::Seconds,
        "Upstream identity provider requests by connector and endpoint."
    );
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP requests by route, method and status."
    );
    metrics::describe_gauge!(ACTIVE_SESSIONS, "Browser sessions that have not expired.");
}

/// Counts a sign-in attempt. Outcomes: `success`, `invalid_credentials`, `denied`,
/// `upstream_error`.
pub fn login(connector: &str, outcome: &'static str) {
    metrics::counter!(LOGINS, "connector" => connector.to_string(), "outcome" => outcome)
        .increment(1);
}

pub fn token_issued(grant_type: &str, client: &str) {
    metrics::counter!(TOKENS_ISSUED, "grant_type" => grant_type.to_string(), "client" => client.to_string())
        .increment(1);
}

pub fn refresh_reuse() {
    metrics::counter!(REFRESH_REUSE).increment(1);
}

/// Records how long an upstream call took.
pub fn upstream(connector: &str, endpoint: &str, elapsed: Duration) {
    metrics::histogram!(
        UPSTREAM_DURATION,
        "connector" => connector.to_string(),
        "endpoint" => endpoint.to_string()
    )
    .record(elapsed.as_secs_f64());
}

pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    metrics::histogram!(
        HTTP_DURATION,
        "route" => route.to_string(),
        "method" => method.to_string(),
        "status" => status.to_string()
    )
    .record(elapsed.as_secs_f64());
}

pub fn active_sessions(n: u64) {
    metrics::gauge!(ACTIVE_SESSIONS).set(n as f64);
}
