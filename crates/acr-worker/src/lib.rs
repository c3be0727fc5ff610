//! acr-import workers.
//!
//! A [`WorkerPool`] claims operations from the store (woken by the store's wake-ups:
//! `LISTEN/NOTIFY` on PostgreSQL, an in-process signal on SQLite; polling as the fallback),
//! runs each copy on its own task with a heartbeat that renews the lease and records progress,
//! and ends the operation with a fenced write.
//!
//! Invariants: at most `workers` copies run per process; a copy whose lease is lost (its
//! heartbeat is refused) is dropped at once and writes nothing; on shutdown no new operation is
//! claimed, running copies get a grace period, then their leases are released so another
//! process resumes them; every step of a copy is idempotent, so a re-run after a crash is safe.

mod delete;
mod execute;
mod record;
mod sources;

use std::sync::Arc;
use std::time::Duration;

use acr_core::metrics;
use acr_oci::{ClientConfig, Credentials, HostLimits, RegistryClient};
use acr_store::{ClaimedOperation, Outcome, Store, Work};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use url::Url;

pub use execute::failure_for;

/// Whether a pool's claim loop runs, for readiness: set while [`WorkerPool::run`] loops (it
/// beats on every turn, at least once per poll interval), cleared when it stops for any reason
/// (shutdown, a panic).
#[derive(Clone)]
pub struct Heartbeat {
    inner: Arc<HeartbeatInner>,
}

struct HeartbeatInner {
    started: std::time::Instant,
    /// Milliseconds since `started` of the last beat; `u64::MAX`: not running.
    last: std::sync::atomic::AtomicU64,
    poll_interval: Duration,
}

impl Heartbeat {
    fn new(poll_interval: Duration) -> Self {
        Self {
            inner: Arc::new(HeartbeatInner {
                started: std::time::Instant::now(),
                last: std::sync::atomic::AtomicU64::new(u64::MAX),
                poll_interval,
            }),
        }
    }

    fn beat(&self) {
        let ms = u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.inner
            .last
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn stop(&self) {
        self.inner
            .last
            .store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
    }

    /// `Err(reason)` when the loop is not running, or has not turned for three poll intervals
    /// (at least 10 s: a claim may wait on a slow database that long).
    pub fn check(&self) -> Result<(), String> {
        let last = self.inner.last.load(std::sync::atomic::Ordering::Relaxed);
        if last == u64::MAX {
            return Err("the workers are not running".into());
        }
        let now = self.inner.started.elapsed();
        let since = now.saturating_sub(Duration::from_millis(last));
        let limit = (self.inner.poll_interval * 3).max(Duration::from_secs(10));
        if since > limit {
            return Err(format!(
                "the workers' claim loop has not turned for {} s",
                since.as_secs()
            ));
        }
        Ok(())
    }
}

/// Clears the heartbeat when the loop ends, however it ends.
struct Running(Heartbeat);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Settings of the workers.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Concurrent operations per process.
    pub workers: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// Attempts before an operation that keeps losing its worker is failed.
    pub max_attempts: i32,
    /// Attempts for transient source/target failures before the operation fails.
    pub max_transient_attempts: i32,
    pub backend_url: Url,
    pub backend_credentials: Credentials,
    pub client: ClientConfig,
    /// Blobs in flight per operation.
    pub copy_concurrency: usize,
    pub max_manifests: usize,
    /// Largest layer accepted from a source given by `registryUri`; `None`: no limit.
    pub max_layer_bytes: Option<u64>,
    /// An operation still copying after this long fails with `ImportTimedOut`.
    pub operation_timeout: Duration,
    pub login_server_suffix: String,
    /// How long running copies may go on after shutdown starts.
    pub shutdown_grace: Duration,
    /// The backend serves ACR's `DELETE /acr/v1/<repo>` (the built-in registry): a registry
    /// deletion removes whole repositories with it instead of manifest by manifest.
    pub backend_repository_delete: bool,
}

/// Checks the credentials an import gives for an emulated source named by its login server,
/// as that login server would: exactly those credentials are used (the login servers own the
/// check; the copy then reads the backend).
pub trait EmulatedSourceAuth: Send + Sync {
    /// Whether `username`/`password` may pull from `registry`.
    fn may_pull<'a>(
        &'a self,
        registry: &'a acr_store::RegistryRecord,
        username: Option<&'a str>,
        password: &'a str,
    ) -> futures::future::BoxFuture<'a, bool>;
}

/// The workers of one process.
pub struct WorkerPool {
    store: Store,
    config: Arc<WorkerConfig>,
    http: reqwest::Client,
    backend: Arc<RegistryClient>,
    backend_source: Arc<RegistryClient>,
    limits: Arc<HostLimits>,
    sources: Arc<sources::SourceClients>,
    owner: String,
    source_auth: Option<Arc<dyn EmulatedSourceAuth>>,
    blob_sink: Option<Arc<dyn acr_oci::BlobSink>>,
    heartbeat: Heartbeat,
}

impl WorkerPool {
    pub fn new(store: Store, config: WorkerConfig) -> Result<Self, acr_oci::OciError> {
        // Sources go through the SSRF guard of `config.client`; the backend is the operator's
        // and is exempt.
        let http = config.client.build_http()?;
        let backend_config = ClientConfig {
            network_guard: None,
            ..config.client.clone()
        };
        let limits = HostLimits::new(config.client.registry_concurrency);
        let backend_http = backend_config.build_http()?;
        let backend = Arc::new(RegistryClient::new(
            backend_http.clone(),
            config.backend_url.clone(),
            config.backend_credentials.clone(),
            &backend_config,
            &limits,
        ));
        // The backend read as an import's source (an emulated registry): the same registry
        // (mounts work, `same_registry`), its requests counted as the source's.
        let backend_source = Arc::new(
            RegistryClient::new(
                backend_http,
                config.backend_url.clone(),
                config.backend_credentials.clone(),
                &backend_config,
                &limits,
            )
            .with_role(metrics::Side::Source),
        );
        let owner = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let heartbeat = Heartbeat::new(config.poll_interval);
        Ok(Self {
            store,
            heartbeat,
            config: Arc::new(config),
            http,
            backend,
            backend_source,
            limits,
            sources: Arc::default(),
            owner,
            source_auth: None,
            blob_sink: None,
        })
    }

    /// Checks credentials given for emulated sources with `auth` (without it they are
    /// refused: nothing can vouch for them).
    pub fn with_source_auth(mut self, auth: Arc<dyn EmulatedSourceAuth>) -> Self {
        self.source_auth = Some(auth);
        self
    }

    /// The backend's blob store in this process (the built-in registry): blobs from other
    /// registries are written there without the HTTP hop; everything else still goes
    /// through the backend's HTTP API.
    pub fn with_blob_sink(mut self, sink: Arc<dyn acr_oci::BlobSink>) -> Self {
        self.blob_sink = Some(sink);
        self
    }

    /// The backend registry client (shared by all operations).
    pub fn backend(&self) -> &Arc<RegistryClient> {
        &self.backend
    }

    /// Tells whether [`WorkerPool::run`] is looping (readiness).
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat.clone()
    }

    /// Runs until `shutdown` is cancelled and every running copy has finished or been released.
    ///
    /// The heartbeat counts the loop as running from this call on, before the future is first
    /// polled: a service spawns it and then says it is ready, and on a busy machine the task's
    /// first turn (and PostgreSQL's LISTEN connection) may come later than a readiness probe.
    /// If the loop does not turn in time, readiness says so ("has not turned for N s").
    pub fn run(self, shutdown: CancellationToken) -> impl std::future::Future<Output = ()> + Send {
        let running = Running(self.heartbeat.clone());
        running.0.beat();
        self.run_loop(shutdown, running)
    }

    async fn run_loop(self, shutdown: CancellationToken, running: Running) {
        let slots = Arc::new(Semaphore::new(self.config.workers.max(1)));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut listener = self.store.wakeups().await.ok();
        tracing::info!(owner = %self.owner, workers = self.config.workers, "workers started");
        loop {
            running.0.beat();
            // Claim while there are free slots and runnable operations.
            while let Ok(permit) = slots.clone().try_acquire_owned() {
                if shutdown.is_cancelled() {
                    break;
                }
                let (owner, lease) = (self.owner.clone(), self.config.lease);
                let claimed = self
                    .store
                    .transact(|s| async move { s.claim(&owner, lease).await })
                    .await;
                match claimed {
                    Ok(Some(op)) => {
                        record_claim(&op);
                        let ctx = self.context();
                        let token = shutdown.clone();
                        tasks.spawn(async move {
                            run_operation(ctx, op, token).await;
                            drop(permit);
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %acr_core::error_chain(&e), "claim failed; will retry");
                        break;
                    }
                }
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map_err(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = notified => {
                    if r.is_err() {
                        listener = None;
                    }
                }
                _ = tokio::time::sleep(self.config.poll_interval) => {
                    if listener.is_none() {
                        listener = self.store.wakeups().await.ok();
                    }
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(running);
        tracing::info!(running = tasks.len(), "workers stopping: no new claims");
        while tasks.join_next().await.is_some() {}
        tracing::info!("workers stopped");
    }

    fn context(&self) -> WorkerCtx {
        WorkerCtx {
            store: self.store.clone(),
            config: self.config.clone(),
            http: self.http.clone(),
            backend: self.backend.clone(),
            backend_source: self.backend_source.clone(),
            limits: self.limits.clone(),
            sources: self.sources.clone(),
            source_auth: self.source_auth.clone(),
            blob_sink: self.blob_sink.clone(),
        }
    }
}

/// What one operation's task needs.
#[derive(Clone)]
pub(crate) struct WorkerCtx {
    pub store: Store,
    pub config: Arc<WorkerConfig>,
    pub http: reqwest::Client,
    pub backend: Arc<RegistryClient>,
    /// The backend as an emulated registry an import reads from (requests counted as the
    /// source's).
    pub backend_source: Arc<RegistryClient>,
    pub limits: Arc<HostLimits>,
    pub sources: Arc<sources::SourceClients>,
    pub source_auth: Option<Arc<dyn EmulatedSourceAuth>>,
    pub blob_sink: Option<Arc<dyn acr_oci::BlobSink>>,
}

/// Drives one claimed operation to an end (or gives it back), every event of it inside the
/// operation's span.
async fn run_operation(ctx: WorkerCtx, op: ClaimedOperation, shutdown: CancellationToken) {
    let span =
        tracing::info_span!("operation", operation.id = %op.record.id, attempt = op.attempt());
    run_operation_in_span(ctx, op, shutdown)
        .instrument(span)
        .await
}

async fn run_operation_in_span(ctx: WorkerCtx, op: ClaimedOperation, shutdown: CancellationToken) {
    let id = op.record.id.clone();
    let attempt = op.attempt();

    if attempt > ctx.config.max_attempts {
        let outcome = Outcome::Failed(acr_core::operation::ImportFailure::new(
            acr_core::operation::FailureKind::Internal,
            format!(
                "Operation {id} failed: the import was interrupted {} times (the service restarted or lost its database) and was abandoned.",
                attempt - 1
            ),
        ));
        finish(&ctx, &op, &outcome, None).await;
        return;
    }

    let progress = Arc::new(acr_oci::Progress::default());
    let lost = CancellationToken::new();
    let beat = tokio::spawn(heartbeat(
        ctx.clone(),
        id.clone(),
        attempt,
        progress.clone(),
        lost.clone(),
    ));

    let grace = ctx.config.shutdown_grace;
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    let timeout = ctx.config.operation_timeout;
    let work = async {
        match &op.work {
            Work::Import(_) => execute::execute(&ctx, &op, progress.clone()).await,
            Work::DeleteRegistry => delete::delete_content(&ctx, &op).await,
            Work::DeleteResourceGroup => delete::wait_for_group(&ctx, &op).await,
        }
    };
    let run = async {
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(execute::Failure::Final(acr_core::operation::ImportFailure::new(
                acr_core::operation::FailureKind::TimedOut,
                format!(
                    "Operation {id} failed: the import did not finish within {} seconds and was stopped.",
                    timeout.as_secs()
                ),
            ))),
        }
    };
    let kind = op.work.kind();
    let result = tokio::select! {
        r = run => Some(r),
        _ = lost.cancelled() => {
            tracing::warn!(operation.id = %id, attempt, "lease lost: abandoning this attempt");
            metrics::lease_lost(kind);
            None
        }
        _ = deadline => {
            tracing::info!(operation.id = %id, attempt, "shutdown grace over: releasing the operation");
            release(&ctx, &op, Duration::ZERO, metrics::Release::Shutdown).await;
            None
        }
    };
    beat.abort();
    let Some(result) = result else {
        // The copy future is dropped: nothing more is written. Say so, in case the operation
        // was ended from outside (a registry deletion waits for it).
        acknowledge_stop(&ctx, &id, attempt).await;
        return;
    };
    let snapshot = serde_json::to_value(progress.snapshot()).ok();
    match result {
        Err(execute::Failure::Abandoned(why)) => {
            tracing::warn!(operation.id = %id, attempt, %why, "attempt abandoned: another attempt will finish the operation");
            acknowledge_stop(&ctx, &id, attempt).await;
        }
        Ok(()) => match &op.work {
            Work::Import(_) => {
                tracing::info!(operation.id = %id, "import succeeded");
                finish(&ctx, &op, &Outcome::Succeeded, snapshot.as_ref()).await;
            }
            Work::DeleteRegistry => {
                let registry = &op.record.registry_name;
                match ctx
                    .store
                    .complete_registry_deletion(&id, attempt, registry)
                    .await
                {
                    Ok(true) => {
                        tracing::info!(operation.id = %id, %registry, "registry deleted");
                        record_end(&op, metrics::Ended::Succeeded, metrics::NO_CODE);
                    }
                    Ok(false) => tracing::warn!(operation.id = %id, "deletion fenced out"),
                    // The lease runs out and the (idempotent) deletion is redone.
                    Err(e) => {
                        tracing::warn!(operation.id = %id, error = %acr_core::error_chain(&e), "could not complete the deletion")
                    }
                }
            }
            Work::DeleteResourceGroup => {
                let rec = &op.record;
                match ctx
                    .store
                    .complete_group_deletion(
                        &id,
                        attempt,
                        &rec.subscription_id,
                        &rec.resource_group,
                    )
                    .await
                {
                    Ok(ended) => {
                        tracing::info!(operation.id = %id, group = %rec.resource_group, "resource group deleted");
                        if ended {
                            record_end(&op, metrics::Ended::Succeeded, metrics::NO_CODE);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(operation.id = %id, error = %acr_core::error_chain(&e), "could not complete the deletion")
                    }
                }
            }
        },
        Err(execute::Failure::Retry { delay, reason, .. })
            if attempt < ctx.config.max_transient_attempts =>
        {
            tracing::warn!(operation.id = %id, %reason, ?delay, "transient failure: the operation will be retried");
            release(&ctx, &op, delay, metrics::Release::Retry).await;
        }
        Err(f) => {
            let Some(fail) = f.into_failure() else { return };
            tracing::info!(operation.id = %id, code = fail.kind.code(), message = %fail.message, "operation failed");
            let outcome = Outcome::Failed(fail);
            finish(&ctx, &op, &outcome, snapshot.as_ref()).await;
        }
    }
}

/// Counts a claim: every attempt, the queue wait of a first one (both instants are the
/// store's clock), a re-claim after an expired lease.
fn record_claim(op: &ClaimedOperation) {
    let rec = &op.record;
    let first = (rec.attempt == 1)
        .then_some(rec.started_at)
        .flatten()
        .map(|started| (started - rec.created_at).to_std().unwrap_or_default());
    metrics::operation_claimed(op.work.kind(), first, op.reclaimed);
}

/// Counts an operation this worker ended, with its run time since its first claim.
fn record_end(op: &ClaimedOperation, status: metrics::Ended, code: &'static str) {
    let kind = op.work.kind();
    metrics::operations_finished(kind, status, code, 1);
    if let Some(started) = op.record.started_at {
        let took = (chrono::Utc::now() - started).to_std().unwrap_or_default();
        metrics::run_duration(kind, status, took);
    }
}

/// Gives the operation back to the queue, runnable after `delay`.
async fn release(ctx: &WorkerCtx, op: &ClaimedOperation, delay: Duration, why: metrics::Release) {
    let id = &op.record.id;
    let (owned_id, attempt) = (id.to_owned(), op.attempt());
    let released = ctx
        .store
        .transact(|s| async move { s.release(&owned_id, attempt, delay).await })
        .await;
    match released {
        Ok(true) => metrics::operation_released(op.work.kind(), why),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(operation.id = %id, error = %acr_core::error_chain(&e), "release failed; the lease will expire")
        }
    }
}

/// Writes the end of an operation, retrying while the database is unreachable for up to a
/// lease; after that the lease expires and another attempt redoes the (idempotent) copy.
async fn finish(
    ctx: &WorkerCtx,
    op: &ClaimedOperation,
    outcome: &Outcome,
    progress: Option<&serde_json::Value>,
) {
    let (id, attempt) = (op.record.id.as_str(), op.attempt());
    let until = tokio::time::Instant::now() + ctx.config.lease;
    loop {
        let (owned_id, owned_outcome, owned_progress) =
            (id.to_owned(), outcome.clone(), progress.cloned());
        let ended = ctx
            .store
            .transact(|s| async move {
                s.finish(&owned_id, attempt, &owned_outcome, owned_progress.as_ref())
                    .await
            })
            .await;
        match ended {
            Ok(true) => {
                let (status, code) = match outcome {
                    Outcome::Succeeded => (metrics::Ended::Succeeded, metrics::NO_CODE),
                    Outcome::Failed(f) => (metrics::Ended::Failed, f.kind.code()),
                    Outcome::Canceled => (metrics::Ended::Canceled, metrics::NO_CODE),
                };
                record_end(op, status, code);
                return;
            }
            Ok(false) => {
                tracing::warn!(operation.id = %id, attempt, "finish refused: the operation was ended elsewhere");
                acknowledge_stop(ctx, id, attempt).await;
                return;
            }
            Err(e) if tokio::time::Instant::now() < until => {
                tracing::warn!(operation.id = %id, error = %acr_core::error_chain(&e), "finish failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                tracing::error!(operation.id = %id, error = %acr_core::error_chain(&e), "finish failed; the lease will expire and the import will be redone");
                return;
            }
        }
    }
}

/// Tells the store this attempt writes nothing more (best effort: otherwise its lease runs out).
async fn acknowledge_stop(ctx: &WorkerCtx, id: &str, attempt: i32) {
    if let Err(e) = ctx.store.acknowledge_stop(id, attempt).await {
        tracing::warn!(operation.id = %id, error = %acr_core::error_chain(&e), "could not acknowledge the stop; the lease will run out");
    }
}

/// How often a running operation renews its lease and records its progress: a third of the
/// lease, at most a second (progress is live for pollers, and a cancelled operation stops
/// within a second).
fn heartbeat_interval(lease: Duration) -> Duration {
    (lease / 3).min(Duration::from_secs(1))
}

/// Renews the lease and records progress (see [`heartbeat_interval`]); cancels `lost` when the
/// store refuses (another attempt owns the operation, or it was cancelled) or cannot confirm
/// the lease in time.
async fn heartbeat(
    ctx: WorkerCtx,
    id: String,
    attempt: i32,
    progress: Arc<acr_oci::Progress>,
    lost: CancellationToken,
) {
    let every = heartbeat_interval(ctx.config.lease);
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let snap = serde_json::to_value(progress.snapshot()).ok();
        match ctx
            .store
            .heartbeat(
                &id,
                attempt,
                ctx.config.lease,
                snap.as_ref(),
                progress.percent(),
            )
            .await
        {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => {
                lost.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(operation.id = %id, error = %acr_core::error_chain(&e), "heartbeat failed");
                if last_ok.elapsed() >= ctx.config.lease {
                    lost.cancel();
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_says_whether_the_claim_loop_runs() {
        let h = Heartbeat::new(Duration::from_millis(10));
        assert_eq!(
            h.check(),
            Err("the workers are not running".to_string()),
            "before the loop starts"
        );
        let running = Running(h.clone());
        running.0.beat();
        assert_eq!(h.check(), Ok(()));
        drop(running);
        assert!(h.check().is_err(), "after the loop ends, however it ends");
    }

    #[test]
    fn a_loop_that_stopped_turning_is_not_ready() {
        let h = Heartbeat::new(Duration::from_millis(10));
        // A beat 20 s ago: past three poll intervals and past the 10 s floor.
        h.inner.last.store(0, std::sync::atomic::Ordering::Relaxed);
        let started = std::time::Instant::now() - Duration::from_secs(20);
        let old = Heartbeat {
            inner: Arc::new(HeartbeatInner {
                started,
                last: std::sync::atomic::AtomicU64::new(0),
                poll_interval: Duration::from_millis(10),
            }),
        };
        let err = old.check().expect_err("stale");
        assert!(
            err.starts_with("the workers' claim loop has not turned for 2"),
            "{err}"
        );
        assert_eq!(h.check(), Ok(()), "a fresh beat is within the floor");
    }
}
