//! The bank as a process: the event store, the projection job and the HTTP server in one,
//! started in that order and stopped in the reverse one.
//!
//! `DATA/store` holds the event store, `DATA/readmodel.redb` the projection's table and
//! `DATA/checkpoints` its checkpoints: a restart (after a clean stop or a crash) reopens the
//! store, resumes the transfers a crash interrupted, and resumes the projection from its last
//! checkpoint, so every event is reflected in the table exactly once.

use riffle_connectors::eventstore::register_open_store;
use riffle_core::{Error, Result};
use riffle_eventstore::EventStore;
use riffle_runtime::projection::{Projection, ProjectionConfig};
use std::path::PathBuf;
use std::time::Duration;

/// How the bank runs.
#[derive(Debug, Clone)]
pub struct BankConfig {
    /// Its data directory.
    pub data: PathBuf,
    /// The projection's checkpoint interval: its rows become visible at each checkpoint.
    pub checkpoint_interval: Duration,
    /// The projection's worker threads.
    pub workers: usize,
    /// When set, every request but `GET /healthz` needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// Runs the bank on `listener` until `shutdown` completes.
pub async fn run(
    config: BankConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let store_dir = config.data.join("store");
    let store = EventStore::open(&store_dir).map_err(|e| Error::Config(e.to_string()))?;
    let registration = register_open_store(&store);
    let transfers = crate::transfer::Transfers::new(store.clone());
    let resumed = tokio::task::spawn_blocking(move || transfers.resume_all())
        .await
        .map_err(|e| Error::Execution(format!("resuming transfers: {e}")))?
        .map_err(|e| Error::Execution(format!("resuming transfers: {e}")))?;
    if resumed > 0 {
        tracing::info!("resumed {resumed} transfer(s) a crash had interrupted");
    }
    let mut projection = ProjectionConfig::new(
        format!("store://{}", store_dir.display()),
        config.data.join("readmodel.redb"),
        config.data.join("checkpoints"),
    );
    projection.checkpoint_interval = config.checkpoint_interval;
    projection.workers = config.workers.max(1);
    let projection = Projection::spawn(projection, crate::projection::build)?;
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let app = crate::server::router(
        store.clone(),
        projection.model().clone(),
        closing_rx,
        config.token.as_deref(),
    );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("bank: shutting down");
            let _ = closing_tx.send(true);
        })
        .await;
    // The projection ends with a checkpoint of everything it read, then the store closes.
    let stopped = tokio::task::spawn_blocking(move || projection.stop())
        .await
        .map_err(|e| Error::Execution(format!("stopping the projection: {e}")))?;
    drop(registration);
    drop(store);
    served.map_err(|e| Error::Execution(format!("the bank's HTTP server failed: {e}")))?;
    stopped.map(|_| ())
}
