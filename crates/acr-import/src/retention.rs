//! The retention sweep's loop: every `--retention-interval-seconds`, the login servers delete
//! the untagged manifests ACR's retention policy says are due (`acr_frontdoor::retention`).
//! Replicas on one PostgreSQL database take turns (the sweep holds an advisory lock).

use std::time::Duration;

use acr_frontdoor::FrontDoor;
use tokio_util::sync::CancellationToken;

use crate::periodic::{self, First};

/// Sweeps every `every` until `stop`, the first time one interval after the start.
pub async fn sweep_every(front: FrontDoor, every: Duration, stop: CancellationToken) {
    periodic::every(every, First::AfterInterval, stop, move || {
        sweep(front.clone())
    })
    .await
}

/// One sweep, its outcome logged.
async fn sweep(front: FrontDoor) {
    match front.retention_sweep().await {
        Ok(Some(r)) if r.deleted > 0 || r.kept > 0 || r.postponed > 0 => tracing::info!(
            registries = r.registries,
            deleted = r.deleted,
            kept = r.kept,
            postponed = r.postponed,
            "retention sweep deleted untagged manifests"
        ),
        Ok(Some(r)) => {
            tracing::debug!(registries = r.registries, "retention sweep: nothing due")
        }
        Ok(None) => tracing::debug!("retention sweep: another process is sweeping"),
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "retention sweep failed")
        }
    }
}
