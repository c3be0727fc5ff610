//! `importImage` and its two operation URLs.

use acr_core::arm::{ApiSurface, REGISTRY_TYPE};
use acr_core::import::ImportSpec;
use acr_core::operation::OperationState;
use acr_core::wire::{ErrorDetail, ImportImageParameters, ImportProgress, OperationStatus};
use acr_store::{Enqueued, NewOperation, OperationRecord, StoredCredentials};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use secrecy::ExposeSecret;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ArmJson, ArmPath, RawApiVersion};
use crate::registries::registry_id;
use crate::rules;
use crate::{AppState, ListenerScheme, CLIENT_REQUEST_ID};

/// Operation ids are `registries-<guid>`.
const OPERATION_PREFIX: &str = "registries-";

/// Copies an image into the registry (a long-running operation).
#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}/importImage",
    operation_id = "Registries_ImportImage", tag = "registries",
    params(("subscriptionId" = String, Path, description = "Subscription id (a UUID)", format = "uuid"),
           ("resourceGroupName" = String, Path, description = "Resource group name", min_length = 1, max_length = 90, pattern = r"^[-\w\._\(\)]+$"),
           ("registryName" = String, Path, description = "Registry name", min_length = 5, max_length = 50, pattern = "^[a-zA-Z0-9]*$"),
           ("api-version" = String, Query, description = "API version", min_length = 1),
           ("x-ms-client-request-id" = Option<String>, Header, description = "A GUID: the operation becomes registries-<guid>; repeats return the same operation")),
    request_body = ImportImageParameters,
    responses((status = 200, description = "Completed at once: everything was already in the target"),
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
    ArmPath((sub, rg, name)): ArmPath<(String, String, String)>,
    version: RawApiVersion,
    scheme: Option<Extension<ListenerScheme>>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    ArmJson(params): ArmJson<ImportImageParameters>,
) -> Result<Response, ApiError> {
    let api_version = version.check(ApiSurface::Import)?;
    let id = registry_id(&sub, &rg, &name)?;
    let spec =
        ImportSpec::from_params(&params).map_err(|e| ApiError::invalid("InvalidParameters", e))?;
    let target = state
        .store
        .get_registry(&id.subscription, &id.resource_group, &id.name)
        .await?
        .ok_or_else(|| ApiError::resource_not_found(REGISTRY_TYPE, &id.name, &id.resource_group))?;
    if target.deleting() {
        return Err(ApiError::registry_deleting(&target.name));
    }
    let target_id = target.id();
    let source =
        rules::check_import(&state, &target, &spec, params.source.credentials.is_some()).await?;
    if let Some(Extension(caller)) = &caller {
        let read_source = source
            .as_ref()
            .filter(|s| s.by_resource_id || params.source.credentials.is_none());
        crate::auth::authorize_import(&state, caller, &target_id, read_source)?;
    }

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

/// `202 Accepted` for a long-running operation: `Location`, `Azure-AsyncOperation` and
/// `Retry-After`, no body.
pub(crate) fn accepted(
    state: &AppState,
    scheme: Option<&ListenerScheme>,
    headers: &HeaderMap,
    rec: &OperationRecord,
) -> Result<Response, ApiError> {
    let base = public_base(state, scheme, headers)?;
    let (location, async_op) = operation_urls(&base, rec);
    let mut resp = StatusCode::ACCEPTED.into_response();
    let h = resp.headers_mut();
    for (name, v) in [
        (header::LOCATION, location),
        (
            header::HeaderName::from_static("azure-asyncoperation"),
            async_op,
        ),
        (
            header::RETRY_AFTER,
            state.config.retry_after.max(1).to_string(),
        ),
    ] {
        let v = HeaderValue::from_str(&v).map_err(|_| ApiError::internal())?;
        h.insert(name, v);
    }
    Ok(resp)
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
            .progress
            .as_ref()
            .and_then(|p| serde_json::from_value(p.0.clone()).ok());
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

/// `scheme://host` for the URLs we hand out.
pub(crate) fn public_base(
    state: &AppState,
    scheme: Option<&ListenerScheme>,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    if let Some(u) = &state.config.public_url {
        return Ok(u.as_str().trim_end_matches('/').to_owned());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        })
        .ok_or_else(|| {
            ApiError::bad_request("InvalidHostHeader", "The request has no valid Host header.")
        })?;
    let scheme = scheme.map(|s| s.0).unwrap_or(state.config.scheme);
    Ok(format!("{scheme}://{host}"))
}

pub(crate) fn operation_urls(base: &str, rec: &OperationRecord) -> (String, String) {
    let prefix = format!(
        "{base}/subscriptions/{}/providers/Microsoft.ContainerRegistry/locations/{}",
        rec.subscription_id, rec.location
    );
    (
        format!(
            "{prefix}/operationResults/{}?api-version={}",
            rec.id, rec.api_version
        ),
        format!(
            "{prefix}/operationStatuses/{}?api-version={}",
            rec.id, rec.api_version
        ),
    )
}

async fn load_operation(
    state: &AppState,
    sub: &str,
    op_id: &str,
) -> Result<OperationRecord, ApiError> {
    let sub = ApiError::subscription(sub)?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "OperationNotFound",
            format!(
                "The operation '{}' was not found.",
                acr_core::reference::truncate(op_id)
            ),
        )
    };
    if !op_id.starts_with(OPERATION_PREFIX) || op_id.len() > 100 {
        return Err(not_found());
    }
    let rec = state
        .store
        .get_operation(op_id)
        .await?
        .ok_or_else(not_found)?;
    if rec.subscription_id != sub {
        return Err(not_found());
    }
    if let Some(ended) = rec.ended_at {
        let retention = state.config.operation_retention;
        let age = (chrono::Utc::now() - ended).to_std().unwrap_or_default();
        if age > retention {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "OperationNotFound",
                format!(
                    "The operation '{}' has expired: the results of finished operations are kept for {}.",
                    rec.id,
                    human_duration(retention)
                ),
            ));
        }
    }
    Ok(rec)
}

/// `Retry-After: <--retry-after>` on an answer that means "still running".
fn add_retry_after(state: &AppState, resp: &mut Response) {
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(state.config.retry_after.max(1)),
    );
}

fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) && s >= 3600 {
        format!("{} hours", s / 3600)
    } else if s.is_multiple_of(60) && s >= 60 {
        format!("{} minutes", s / 60)
    } else {
        format!("{s} seconds")
    }
}

/// The Location URL: 202 while running, 200 when succeeded, the error a synchronous call would
/// have returned when failed.
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.ContainerRegistry/locations/{location}/operationResults/{operationId}",
    operation_id = "OperationResults_Get", tag = "operations",
    params(("subscriptionId" = String, Path), ("location" = String, Path), ("operationId" = String, Path), ("api-version" = String, Query)),
    responses((status = 200, description = "The import succeeded"),
              (status = 202, description = "Still running", headers(("Retry-After" = u32))),
              (status = "default", description = "The import failed, or the operation is unknown", body = acr_core::wire::ErrorResponse)))]
pub async fn operation_result(
    State(state): State<AppState>,
    ArmPath((sub, _location, op_id)): ArmPath<(String, String, String)>,
    version: RawApiVersion,
) -> Result<Response, ApiError> {
    // Any api-version of the provider: deletions are polled here too.
    version.check(ApiSurface::Registry)?;
    let rec = load_operation(&state, &sub, &op_id).await?;
    match rec.state()? {
        OperationState::Queued | OperationState::Running => {
            let mut resp = StatusCode::ACCEPTED.into_response();
            add_retry_after(&state, &mut resp);
            Ok(resp)
        }
        OperationState::Succeeded => Ok(StatusCode::OK.into_response()),
        OperationState::Failed => {
            let status = rec
                .error_status
                .and_then(|s| u16::try_from(s).ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::BAD_REQUEST);
            Err(ApiError::new(
                status,
                rec.error_code
                    .clone()
                    .unwrap_or_else(|| "InternalServerError".into()),
                rec.error_message
                    .clone()
                    .unwrap_or_else(|| "The import failed.".into()),
            ))
        }
        OperationState::Canceled => Err(ApiError::new(
            StatusCode::CONFLICT,
            "OperationCanceled",
            rec.error_message
                .clone()
                .unwrap_or_else(|| format!("Operation {} was canceled.", rec.id)),
        )),
    }
}

/// The Azure-AsyncOperation URL: always 200 with the status document.
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.ContainerRegistry/locations/{location}/operationStatuses/{operationId}",
    operation_id = "OperationStatuses_Get", tag = "operations",
    params(("subscriptionId" = String, Path), ("location" = String, Path), ("operationId" = String, Path), ("api-version" = String, Query)),
    responses((status = 200, description = "The operation status", body = OperationStatus),
              (status = "default", description = "The status could not be read", body = acr_core::wire::ErrorResponse)))]
pub async fn operation_status(
    State(state): State<AppState>,
    ArmPath((sub, _location, op_id)): ArmPath<(String, String, String)>,
    version: RawApiVersion,
) -> Result<Response, ApiError> {
    // Any api-version of the provider: deletions are polled here too.
    version.check(ApiSurface::Registry)?;
    let rec = load_operation(&state, &sub, &op_id).await?;
    let st = rec.state()?;
    // A cancelled operation says why when it knows (its registry was deleted).
    let has_error = st == OperationState::Failed
        || (st == OperationState::Canceled && rec.error_message.is_some());
    let error = has_error.then(|| ErrorDetail {
        code: rec
            .error_code
            .clone()
            .unwrap_or_else(|| "InternalServerError".into()),
        message: rec
            .error_message
            .clone()
            .unwrap_or_else(|| "The import failed.".into()),
        target: None,
        details: None,
    });
    let progress: Option<ImportProgress> = rec
        .progress
        .as_ref()
        .and_then(|p| serde_json::from_value(p.0.clone()).ok());
    let running = matches!(st, OperationState::Queued | OperationState::Running);
    let mut resp = Json(OperationStatus {
        id: format!(
            "/subscriptions/{}/providers/Microsoft.ContainerRegistry/locations/{}/operationStatuses/{}",
            rec.subscription_id, rec.location, rec.id
        ),
        name: rec.id.clone(),
        status: st.arm_status().to_owned(),
        start_time: rec.created_at,
        end_time: rec.ended_at,
        percent_complete: if st == OperationState::Succeeded { 100.0 } else { rec.percent_complete },
        error,
        properties: progress,
    })
    .into_response();
    // azure-core sleeps the Retry-After *of this answer* before the next poll (30 s without).
    if running {
        add_retry_after(&state, &mut resp);
    }
    Ok(resp)
}
