//! The HTTP client connectors use to reach their upstreams: one per connector, with a
//! timeout so a slow upstream can never hang a login, and optional private root CAs.

use std::path::Path;
use std::time::Duration;

/// Upstream calls give up after this long unless a connector sets `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a client with `timeout` for the whole request and, when given, extra trusted root
/// certificates from a PEM file (for upstreams behind a private CA).
pub fn client(timeout: Duration, root_cas: Option<&Path>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        // Upstream redirects are never followed: a token or userinfo endpoint that redirects
        // is misconfigured, and following could leak credentials.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("idbridge/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = root_cas {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{} holds no usable PEM certificates: {e}", path.display()))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}
