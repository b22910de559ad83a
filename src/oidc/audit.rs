//! The audit trail: events are queued without waiting and written to storage in batches by a
//! background task, so recording never slows a login or a token request down.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::storage::{AuditEvent, Storage, Timestamp};

/// Events waiting to be written; beyond this the newest are dropped (and logged).
const QUEUE: usize = 10_000;
/// Largest batch written in one transaction.
const BATCH: usize = 500;
/// How long the writer lets a burst gather before writing it: a login spike then costs a few
/// statements per batch rather than a few per event.
const LINGER: Duration = Duration::from_millis(5);

#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<AuditEvent>,
}

/// Fields of an event besides its kind and time.
#[derive(Default)]
pub struct Audit<'a> {
    pub user_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub connector_id: Option<&'a str>,
    pub detail: Option<&'a str>,
}

impl AuditLog {
    /// Starts the writer task; it ends when every `AuditLog` clone is dropped, after writing
    /// what was queued.
    pub fn start(storage: Arc<dyn Storage>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(storage, rx));
        Self { tx }
    }

    pub fn record(&self, kind: &str, at: Timestamp, fields: Audit<'_>) {
        let event = AuditEvent {
            at,
            kind: kind.to_string(),
            user_id: fields.user_id.map(str::to_string),
            client_id: fields.client_id.map(str::to_string),
            connector_id: fields.connector_id.map(str::to_string),
            detail: fields.detail.map(str::to_string),
        };
        if let Err(e) = self.tx.try_send(event) {
            tracing::error!(error = %e, kind, "audit queue full; event dropped");
        }
    }
}

async fn writer(storage: Arc<dyn Storage>, mut rx: mpsc::Receiver<AuditEvent>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if batch.len() < BATCH {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
        }
        // A short retry rides out a database restart; after that the batch is logged and dropped
        // rather than holding up everything behind it.
        let mut attempt = 0;
        loop {
            match storage.append_audit_events(&batch).await {
                Ok(()) => break,
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "could not write audit events; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, events = batch.len(), "audit events lost");
                    break;
                }
            }
        }
        batch.clear();
    }
}
