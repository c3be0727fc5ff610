//! Liveness and readiness: `/health/live` (the process answers), `/health/ready` (every part an
//! import needs answers: the store, the registry the copies write into, the workers) and
//! `/health` (the store, as before).
//!
//! Readiness is a list of [`Probe`]s the binary registers (the store's is always there); they
//! run concurrently, each bounded by [`PROBE_TIMEOUT`], so the endpoint answers within a
//! container health check's usual 3 s whatever hangs. Nothing is cached: a PostgreSQL outage
//! turns it 503 on the next request and back to 200 on the first after the database returns.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use futures::future::BoxFuture;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{ApiError, AppState};

/// How long one probe may take before it counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One thing readiness depends on.
pub trait Probe: Send + Sync {
    /// Short and stable, e.g. `store`, `registry`, `workers` (the key in the answer).
    fn name(&self) -> &'static str;
    /// `Err(reason)` when it is not usable now; the reason is shown to operators (no secrets).
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The probes `/health/ready` runs, besides the store's own.
#[derive(Clone, Default)]
pub struct Readiness {
    probes: Vec<Arc<dyn Probe>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.probes.iter().map(|p| p.name()))
            .finish()
    }
}

impl Readiness {
    pub fn with(mut self, probe: Arc<dyn Probe>) -> Self {
        self.probes.push(probe);
        self
    }
}

/// One probe's result in the answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResult {
    pub name: String,
    /// `ok` or `failed`.
    pub status: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `/health/ready`'s 200 body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyBody {
    /// `ready`.
    pub status: String,
    pub checks: Vec<CheckResult>,
}

/// `/health/live`'s body.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveBody {
    /// `live`.
    pub status: String,
}

struct StoreProbe(acr_store::Store);

impl Probe for StoreProbe {
    fn name(&self) -> &'static str {
        "store"
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0.ping().await.map_err(|e| {
                format!(
                    "the database does not answer: {}",
                    acr_core::error_chain(&e)
                )
            })
        })
    }
}

async fn run_probe(probe: &dyn Probe) -> CheckResult {
    let result = match tokio::time::timeout(PROBE_TIMEOUT, probe.check()).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {} s",
            PROBE_TIMEOUT.as_secs_f64()
        )),
    };
    CheckResult {
        name: probe.name().to_string(),
        status: if result.is_ok() { "ok" } else { "failed" }.to_string(),
        reason: result.err(),
    }
}

/// Liveness and database reachability (kept for existing health checks; `/health/ready` says
/// more).
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "The service and its database are up"),
              (status = 503, description = "The database is unreachable", body = acr_core::wire::ErrorResponse)))]
pub async fn health(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    tokio::time::timeout(Duration::from_secs(3), state.store.ping())
        .await
        .map_err(|_| unavailable("The database did not answer in time."))??;
    Ok(Json(serde_json::json!({"status": "ok"})))
}

/// The process is up and serving HTTP (it asks nothing else: a liveness probe that restarts
/// the process during a database outage would not help).
#[utoipa::path(get, path = "/health/live", tag = "service",
    responses((status = 200, description = "The process answers", body = LiveBody)))]
pub async fn live() -> Json<LiveBody> {
    Json(LiveBody {
        status: "live".into(),
    })
}

/// Ready to take imports: the store answers, the registry the copies write into answers (the
/// built-in registry's listener, or the external backend), and the workers run.
#[utoipa::path(get, path = "/health/ready", tag = "service",
    responses((status = 200, description = "Every part answers", body = ReadyBody),
              (status = 503, description = "A part does not answer; the message names each one and why (ARM error shape)", body = acr_core::wire::ErrorResponse)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<ReadyBody>, ApiError> {
    let store = StoreProbe(state.store.clone());
    let mut probes: Vec<&dyn Probe> = vec![&store];
    probes.extend(state.readiness.probes.iter().map(|p| p.as_ref()));
    let checks = futures::future::join_all(probes.into_iter().map(run_probe)).await;
    let failed: Vec<String> = checks
        .iter()
        .filter_map(|c| c.reason.as_ref().map(|r| format!("{}: {r}", c.name)))
        .collect();
    if failed.is_empty() {
        Ok(Json(ReadyBody {
            status: "ready".into(),
            checks,
        }))
    } else {
        Err(unavailable(format!("Not ready. {}.", failed.join("; "))))
    }
}

fn unavailable(message: impl Into<String>) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        message,
    );
    e.retry_after = Some(5);
    e
}
