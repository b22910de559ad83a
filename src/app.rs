//! Wiring: storage, keys, connectors and clients into a provider, the router around it, and
//! the background work (key rotation, garbage collection).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{Config, StaticClient, StorageConfig};
use crate::http::{self, AppState};
use crate::oidc::Provider;
use crate::oidc::clients::{ClientRegistry, GRANT_AUTHORIZATION_CODE, SecretHasher};
use crate::oidc::keys::{KeyManager, RELOAD_INTERVAL};
use crate::storage::{self, Storage};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How often expired rows are collected.
const GC_INTERVAL: Duration = Duration::from_secs(300);

/// Opens the configured storage.
pub async fn open_storage(config: &Config) -> Result<Arc<dyn Storage>, BoxError> {
    Ok(match &config.storage {
        StorageConfig::Sqlite { file } => storage::open_sqlite(file).await?,
        StorageConfig::Postgres {
            url,
            max_connections,
        } => storage::open_postgres(url, *max_connections).await?,
    })
}

/// A random secret shared by every replica through storage (first writer wins). Admin
/// commands use it too: database clients' secrets are hashed with `client_secret_key`.
pub async fn instance_secret(storage: &dyn Storage, name: &str) -> Result<Vec<u8>, BoxError> {
    let candidate = crate::oidc::random::token(32);
    let value = storage.get_or_init_setting(name, &candidate).await?;
    Ok(B64.decode(value.as_bytes())?)
}

/// Loads the signing keys for the configured algorithms, creating the first ones if needed.
pub async fn load_keys(
    config: &Config,
    storage: &dyn Storage,
    now: i64,
) -> Result<KeyManager, BoxError> {
    // A retired key stays published as long as any token it signed can still be valid.
    let max_token_lifetime = config
        .expiry
        .id_tokens
        .max(config.expiry.access_tokens)
        .as_secs() as i64;
    Ok(KeyManager::load(
        storage,
        Provider::signing_algorithms(config),
        config.signer.keys_rotation_period.as_secs() as i64,
        max_token_lifetime,
        now,
    )
    .await?)
}

/// Builds the provider from a configuration over an open storage.
pub async fn build_provider(
    config: Config,
    storage: Arc<dyn Storage>,
    clock: &Clock,
) -> Result<Arc<Provider>, BoxError> {
    let connectors = crate::connectors::build(&config).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let mut statics = config.static_clients.clone();
    if config.test_login.enabled {
        statics.push(StaticClient {
            id: http::TEST_LOGIN_CLIENT_ID.to_string(),
            name: "Test login".into(),
            secret: None,
            redirect_uris: vec![config.endpoint("/test-login/callback")],
            post_logout_redirect_uris: vec![],
            public: true,
            default_scopes: vec![],
            skip_approval: true,
            allowed_connectors: vec![],
            backchannel_logout_uri: None,
            grant_types: vec![GRANT_AUTHORIZATION_CODE.to_string(), "refresh_token".into()],
            allowed_scopes: vec![],
            audience: vec![],
        });
    }
    let hasher = SecretHasher::new(&instance_secret(storage.as_ref(), "client_secret_key").await?);
    let subject_key = hmac::Key::new(
        hmac::HMAC_SHA256,
        &instance_secret(storage.as_ref(), "subject_key").await?,
    );
    let keys = load_keys(&config, storage.as_ref(), clock.now()).await?;
    let clients = ClientRegistry::new(&statics, hasher);
    Ok(Arc::new(Provider::new(
        Arc::new(config),
        storage,
        keys,
        clients,
        connectors,
        subject_key,
    )))
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub provider: Arc<Provider>,
    /// Metrics and probes, for a separate listener.
    pub telemetry: axum::Router,
    /// The whole provider, to serve on a second listener (plain http beside https).
    pub router: axum::Router,
    shutdown: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Server {
    /// Stops accepting, finishes in-flight requests, and waits for the server to end.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.handle.await;
    }
}

/// TLS for a listener: a certificate chain and its private key, PEM files.
pub struct Tls {
    pub config: axum_server::tls_rustls::RustlsConfig,
}

impl Tls {
    pub async fn from_pem_files(
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<Self, BoxError> {
        let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .map_err(|e| {
                format!(
                    "cannot load the TLS certificate {} and key {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
        Ok(Self { config })
    }
}

/// Starts the provider on an already bound listener (tests bind port 0 first, so the issuer
/// can name the port). Background tasks end with the server.
pub async fn spawn(
    config: Config,
    listener: TcpListener,
    clock: Clock,
) -> Result<Server, BoxError> {
    spawn_with(config, listener, None, clock).await
}

/// Like [`spawn`], serving HTTPS on the listener.
pub async fn spawn_tls(
    config: Config,
    listener: TcpListener,
    tls: Tls,
    clock: Clock,
) -> Result<Server, BoxError> {
    spawn_with(config, listener, Some(tls), clock).await
}

async fn spawn_with(
    config: Config,
    listener: TcpListener,
    tls: Option<Tls>,
    clock: Clock,
) -> Result<Server, BoxError> {
    let storage = open_storage(&config).await?;
    let provider = build_provider(config, storage, &clock).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = watch::channel(false);
    let state = AppState::new(http::Shared {
        provider: provider.clone(),
        clock: clock.clone(),
        http: crate::connectors::http::client(Duration::from_secs(5), None)?,
        limits: Arc::new(http::ratelimit::Limits::new(&provider.config.rate_limits)),
    });
    // Install the metrics recorder before the first request is counted.
    let _ = crate::telemetry::handle();
    let telemetry = http::telemetry_router(state.clone());
    let router = http::router(state);
    let background = tokio::spawn(background_tasks(provider.clone(), clock, rx.clone()));
    let mut shutdown_rx = rx;
    let service = router
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    let handle = match tls {
        None => tokio::spawn(async move {
            let served = axum::serve(listener, service)
                .with_graceful_shutdown(async move {
                    let _ = shutdown_rx.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "server failed");
            }
            background.abort();
        }),
        Some(tls) => {
            let std_listener = listener.into_std()?;
            let server = axum_server::from_tcp_rustls(std_listener, tls.config)?;
            let tls_handle = axum_server::Handle::new();
            let stopper = tls_handle.clone();
            tokio::spawn(async move {
                let _ = shutdown_rx.wait_for(|stop| *stop).await;
                stopper.graceful_shutdown(Some(Duration::from_secs(10)));
            });
            tokio::spawn(async move {
                if let Err(e) = server.handle(tls_handle).serve(service).await {
                    tracing::error!(error = %e, "TLS server failed");
                }
                background.abort();
            })
        }
    };
    Ok(Server {
        addr,
        provider,
        telemetry,
        router,
        shutdown: tx,
        handle,
    })
}

/// The periodic work of a server, in one task: key rotation and reload, garbage collection,
/// and reading the revocation counter.
async fn background_tasks(provider: Arc<Provider>, clock: Clock, stop: watch::Receiver<bool>) {
    tokio::join!(
        maintenance(provider.clone(), clock, stop.clone()),
        sync_revocations(provider, stop),
    );
}

/// Reads the database's revocation counter every `SYNC_INTERVAL`, which lets storage answer
/// the per-request revocation checks from memory (see `storage::memo`). A failure is logged
/// once per outage; meanwhile every check reads the database.
async fn sync_revocations(provider: Arc<Provider>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(crate::storage::memo::SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => match provider.storage.sync_revocations().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("revocation counter readable again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot read the revocation counter; checking every token against the database");
                }
                Err(_) => {}
            },
        }
    }
}

/// Key rotation and reload (so keys made by other replicas are published), and garbage
/// collection of expired rows.
async fn maintenance(provider: Arc<Provider>, clock: Clock, mut stop: watch::Receiver<bool>) {
    let mut keys_tick = tokio::time::interval(Duration::from_secs(RELOAD_INTERVAL as u64));
    let mut gc_tick = tokio::time::interval(GC_INTERVAL);
    keys_tick.tick().await;
    gc_tick.tick().await;
    let holder = crate::oidc::random::token(12);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = keys_tick.tick() => {
                let storage = provider.storage.as_ref();
                let now = clock.now();
                if let Err(e) = provider.keys.rotate_if_due(storage, now).await {
                    tracing::error!(error = %e, "key rotation failed");
                }
                if let Err(e) = provider.keys.reload(storage, now).await {
                    tracing::error!(error = %e, "key reload failed");
                }
            }
            _ = gc_tick.tick() => {
                // One replica at a time collects: the lease outlives one interval, so the
                // holder keeps it while it runs and another takes over if it stops.
                let ttl = GC_INTERVAL.as_secs() as i64 * 2;
                match provider.storage.try_lease("garbage_collection", &holder, clock.now(), ttl).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not take the garbage collection lease");
                        continue;
                    }
                }
                match provider.storage.garbage_collect(clock.now()).await {
                    Ok(stats) => tracing::debug!(?stats, "expired rows collected"),
                    Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
                }
                let keep = provider.config.expiry.audit_events.as_secs() as i64;
                if let Err(e) = provider.storage.delete_audit_events_before(clock.now() - keep).await {
                    tracing::warn!(error = %e, "audit retention failed");
                }
            }
        }
    }
}

/// Runs the server from the configuration until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), BoxError> {
    let bind = |addr: String, what: &'static str| async move {
        TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
    };
    let tls = match (&config.web.https, &config.web.tls_cert, &config.web.tls_key) {
        (Some(addr), Some(cert), Some(key)) => Some((
            bind(addr.clone(), "web.https").await?,
            Tls::from_pem_files(cert, key).await?,
        )),
        _ => None,
    };
    // Plain http when configured, or by default when there is no https listener.
    let plain = match (&config.web.http, &tls) {
        (Some(addr), _) => Some(bind(addr.clone(), "web.http").await?),
        (None, None) => Some(bind("127.0.0.1:5556".to_string(), "web.http").await?),
        (None, Some(_)) => None,
    };
    let telemetry_listener = match &config.telemetry.http {
        Some(addr) => Some(bind(addr.clone(), "telemetry.http").await?),
        None => None,
    };
    let issuer = config.issuer.clone();
    let (server, extra_plain) = match (tls, plain) {
        (Some((listener, tls)), plain) => (
            spawn_tls(config, listener, tls, Clock::system()).await?,
            plain,
        ),
        (None, Some(listener)) => (spawn(config, listener, Clock::system()).await?, None),
        (None, None) => return Err("no listener configured (web.http or web.https)".into()),
    };
    if let Some(l) = extra_plain {
        let service = server
            .router
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        tracing::info!(addr = ?l.local_addr().ok(), "also serving plain http");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, service).await {
                tracing::error!(error = %e, "http listener failed");
            }
        });
    }
    if let Some(l) = telemetry_listener {
        let router = server.telemetry.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, router).await {
                tracing::error!(error = %e, "telemetry listener failed");
            }
        });
    }
    tracing::info!(addr = %server.addr, issuer = %issuer, "idbridge is ready");
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
