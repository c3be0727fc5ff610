//! `importImage`: checked, enqueued, answered 202 (or 200 when there was nothing to copy).

use acr_core::arm::ApiSurface;
use acr_core::import::ImportSpec;
use acr_core::operation::OperationState;
use acr_core::wire::{ImportImageParameters, ImportProgress};
use acr_store::{Enqueued, NewOperation, StoredCredentials};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use secrecy::ExposeSecret;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::ArmJson;
use crate::operations::OPERATION_PREFIX;
use crate::registry_path::{RegistryPath, TargetRegistry};
use crate::rules;
use crate::urls::accepted;
use crate::{AppState, ListenerScheme, CLIENT_REQUEST_ID};

/// The routes of this module, with their OpenAPI entries.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import_image))
}

/// Copies an image into the registry (a long-running operation).
#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}/importImage",
    operation_id = "Registries_ImportImage", tag = "registries",
    params(("subscriptionId" = String, Path, description = "Subscription id (a UUID)", format = "uuid"),
           ("resourceGroupName" = String, Path, description = "Resource group name", min_length = 1, max_length = 90, pattern = r"^[-\w\._\(\)]+$"),
           ("registryName" = String, Path, description = "Registry name", min_length = 5, max_length = 50, pattern = "^[a-zA-Z0-9]*$"),
           ("api-version" = String, Query, description = "API version", min_length = 1),
           ("x-ms-client-request-id" = Option<String>, Header, description = "A GUID: the operation becomes registries-<guid>; repeats return the same operation")),
    request_body = ImportImageParameters,
    responses((status = 200, description = "Completed at once: everything was already in the target (only when the service runs with --sync-wait-ms)"),
              (status = 202, description = "Accepted; poll the Azure-AsyncOperation or Location URL",
               headers(("Location" = String, description = "Operation result URL"),
                       ("Azure-AsyncOperation" = String, description = "Operation status URL"),
                       ("Retry-After" = u32, description = "Seconds to wait before polling"))),
              (status = 429, description = "A queue limit is reached (--max-operations-per-subscription, --max-queued-operations); retry after Retry-After seconds",
               headers(("Retry-After" = u32, description = "Seconds to wait before retrying")),
               body = acr_core::wire::ErrorResponse),
              (status = "default", description = "Error", body = acr_core::wire::ErrorResponse)),
    extensions(("x-ms-long-running-operation" = json!(true)),
               ("x-ms-long-running-operation-options" = json!({"final-state-via": "location"}))))]
pub async fn import_image(
    State(state): State<AppState>,
    path: RegistryPath,
    scheme: Option<Extension<ListenerScheme>>,
    headers: HeaderMap,
    ArmJson(params): ArmJson<ImportImageParameters>,
) -> Result<Response, ApiError> {
    let named = path.check(ApiSurface::Import)?;
    let spec =
        ImportSpec::from_params(&params).map_err(|e| ApiError::invalid("InvalidParameters", e))?;
    let target = named.fetch_live(&state).await?;
    let TargetRegistry {
        id,
        api_version,
        caller,
    } = named;
    let target_id = target.id();
    let source =
        rules::check_import(&state, &target, &spec, params.source.credentials.is_some()).await?;
    let read_source = source
        .as_ref()
        .filter(|s| s.by_resource_id || params.source.credentials.is_none());
    crate::caller::authorize_import(&state, &caller, &target_id, read_source.map(|s| &s.id))?;

    let guid = headers
        .get(CLIENT_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::parse_str(v.trim()).ok())
        .unwrap_or_else(uuid::Uuid::new_v4);
    let op_id = format!("{OPERATION_PREFIX}{}", guid.hyphenated());
    let credentials = params
        .source
        .credentials
        .as_ref()
        .map(|c| StoredCredentials {
            username: c.username.clone().filter(|u| !u.is_empty()),
            password: c.password.expose_secret().to_owned(),
        });
    let new = NewOperation {
        id: op_id,
        subscription_id: id.subscription.clone(),
        resource_group: target.resource_group.clone(),
        registry_name: target.name.clone(),
        location: target.location.clone(),
        api_version: api_version.to_owned(),
        work: acr_store::Work::Import(spec.to_stored()),
        credentials,
    };
    let (rec, created) = match state
        .store
        .enqueue_limited(&new, state.config.queue_limits)
        .await?
    {
        Enqueued::Created(r) => {
            tracing::info!(operation.id = %r.id, registry = %r.registry_name, image.source = %spec.source_image, "import accepted");
            (r, true)
        }
        Enqueued::Existing(r) => {
            tracing::info!(operation.id = %r.id, "repeated import request: returning the existing operation");
            (r, false)
        }
    };
    if created && wait_for_nothing_to_copy(&state, &rec.id).await {
        tracing::info!(operation.id = %rec.id, "nothing to copy: answered synchronously");
        return Ok(StatusCode::OK.into_response());
    }
    accepted(&state, scheme.as_deref(), &headers, &rec)
}

/// Waits up to `sync_wait` for a new import to finish without copying a byte (everything was
/// already in the target), as ACR answers such imports with 200 at once. Returns false as soon
/// as the import turns out to copy something, fails, or takes longer.
async fn wait_for_nothing_to_copy(state: &AppState, op_id: &str) -> bool {
    if state.config.sync_wait.is_zero() {
        return false;
    }
    let deadline = tokio::time::Instant::now() + state.config.sync_wait;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let Ok(Some(rec)) = state.store.get_operation(op_id).await else {
            return false;
        };
        let progress: Option<ImportProgress> = rec
            .progress_json()
            .and_then(|p| serde_json::from_value(p.clone()).ok());
        // Any blob to copy means a manifest was missing: not "nothing to copy".
        let copies = |p: &ImportProgress| p.blobs_total > 0 || p.bytes_copied > 0;
        if progress.as_ref().is_some_and(copies) {
            return false;
        }
        match rec.state() {
            Ok(OperationState::Succeeded) => return progress.is_some_and(|p| !copies(&p)),
            Ok(OperationState::Queued | OperationState::Running) => {}
            _ => return false,
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
    }
}
