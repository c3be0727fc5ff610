//! A registry deletion: cancel the imports into the registry, wait until their workers have
//! stopped writing, remove its content from the backend, then end the operation and remove
//! the registry (one store transaction, see `acr_store::lifecycle`).

use std::collections::BTreeSet;
use std::time::Duration;

use acr_core::metrics;
use acr_core::operation::{FailureKind, ImportFailure};
use acr_core::reference::Repository;
use acr_oci::OciError;
use acr_store::{ClaimedOperation, Work};

use crate::execute::Failure;
use crate::WorkerCtx;

/// The ARM code of an import cancelled because its target registry is deleted.
const CANCELED_CODE: &str = "OperationCanceled";

/// How often the deletion looks whether the cancelled imports' workers have stopped.
const STOP_POLL: Duration = Duration::from_millis(200);

/// Deletes the content of the operation's registry. `Ok`: the content is gone and the
/// registry may be removed.
pub(crate) async fn delete_content(ctx: &WorkerCtx, op: &ClaimedOperation) -> Result<(), Failure> {
    let name = op.record.registry_name.to_lowercase();
    let store = |e: acr_store::StoreError| Failure::Retry {
        delay: Duration::from_secs(2),
        reason: acr_core::error_chain(&e),
        failure: ImportFailure::new(
            FailureKind::Internal,
            "The service could not read its database.",
        ),
    };
    let cancelled = ctx
        .store
        .cancel_imports_into(
            &name,
            CANCELED_CODE,
            &format!(
                "the target registry '{}' was deleted.",
                op.record.registry_name
            ),
        )
        .await
        .map_err(store)?;
    if cancelled > 0 {
        tracing::info!(operation.id = %op.record.id, registry = %name, cancelled, "imports into the deleted registry cancelled");
        metrics::operations_finished(
            Work::IMPORT_KIND,
            metrics::Ended::Canceled,
            CANCELED_CODE,
            cancelled,
        );
    }
    // Their workers drop their copies at the next heartbeat and say so; a dead worker's
    // lease runs out. Only then is nothing written into the registry any more.
    let deadline = tokio::time::Instant::now() + ctx.config.lease * 2;
    loop {
        let writing = ctx
            .store
            .imports_still_writing(&name)
            .await
            .map_err(store)?;
        if writing == 0 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::Retry {
                delay: Duration::from_secs(1),
                reason: format!("{writing} cancelled imports have not stopped yet"),
                failure: ImportFailure::new(
                    FailureKind::Internal,
                    format!(
                        "The registry '{}' could not be deleted: {writing} imports into it did not stop.",
                        op.record.registry_name
                    ),
                ),
            });
        }
        tokio::time::sleep(STOP_POLL).await;
    }

    let target = |e: OciError| {
        let failure = ImportFailure::new(
            FailureKind::TargetRegistryError,
            format!(
                "The content of registry '{}' could not be deleted from the backend registry: {e}.",
                op.record.registry_name
            ),
        );
        if e.is_transient() {
            Failure::Retry {
                delay: Duration::from_secs(2),
                reason: acr_core::error_chain(&e),
                failure,
            }
        } else {
            Failure::Final(failure)
        }
    };
    let prefix = format!("{name}/");
    let mut repos: BTreeSet<String> = ctx
        .backend
        .catalog_with_prefix(&prefix)
        .await
        .map_err(target)?
        .into_iter()
        .collect();
    for r in ctx.store.known_repositories(&name).await.map_err(store)? {
        repos.insert(format!("{prefix}{r}"));
    }
    for full in &repos {
        let Ok(repo) = Repository::parse(full) else {
            tracing::warn!(repository = %full, "not a repository name: skipped");
            continue;
        };
        if ctx.config.backend_repository_delete {
            ctx.backend.delete_repository(&repo).await.map_err(target)?;
        } else {
            let inner = full.strip_prefix(&prefix).unwrap_or(full);
            let known = ctx
                .store
                .known_manifests(&name, inner)
                .await
                .map_err(store)?;
            ctx.backend
                .delete_repository_content(&repo, &known)
                .await
                .map_err(target)?;
        }
        tracing::info!(operation.id = %op.record.id, repository = %full, "repository deleted");
    }
    Ok(())
}

/// A resource group deletion: its registries are being deleted by their own operations
/// (started with it); this one waits until none is left. `Ok`: the group may go.
pub(crate) async fn wait_for_group(ctx: &WorkerCtx, op: &ClaimedOperation) -> Result<(), Failure> {
    let rec = &op.record;
    loop {
        let left = ctx
            .store
            .list_registries(&rec.subscription_id, Some(&rec.resource_group))
            .await
            .map_err(|e| Failure::Retry {
                delay: Duration::from_secs(2),
                reason: acr_core::error_chain(&e),
                failure: ImportFailure::new(
                    FailureKind::Internal,
                    "The service could not read its database.",
                ),
            })?;
        if left.is_empty() {
            return Ok(());
        }
        // A registry whose deletion ended without deleting it (failed) keeps the group.
        for r in &left {
            let failed = match &r.deletion_operation_id {
                None => true,
                Some(id) => matches!(
                    ctx.store.get_operation(id).await,
                    Ok(Some(o)) if o.state().map(|s| s.is_terminal()).unwrap_or(true)
                ),
            };
            if failed {
                return Err(Failure::Final(ImportFailure::new(
                    FailureKind::Internal,
                    format!(
                        "The resource group '{}' could not be deleted: its registry '{}' was not deleted.",
                        rec.resource_group, r.name
                    ),
                )));
            }
        }
        tokio::time::sleep(STOP_POLL).await;
    }
}
