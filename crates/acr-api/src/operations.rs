//! The two URLs of a long-running operation (imports, registry and resource group deletions):
//! `operationResults` (the Location URL: 202 while running, then the outcome) and
//! `operationStatuses` (the Azure-AsyncOperation URL: always the status document).

use acr_core::arm::ApiSurface;
use acr_core::operation::OperationState;
use acr_core::wire::{ErrorDetail, ImportProgress, OperationStatus};
use acr_store::OperationRecord;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::{ArmPath, RawApiVersion};
use crate::AppState;

/// Operation ids are `registries-<guid>`.
pub(crate) const OPERATION_PREFIX: &str = "registries-";

/// The routes of this module, each with its OpenAPI entry.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(operation_result))
        .routes(routes!(operation_status))
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
    if !op_id.starts_with(OPERATION_PREFIX) || op_id.chars().count() > 100 || op_id.contains('\0') {
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
            // (A failed record always has an error; the default is never seen.)
            let (code, message) = rec.error().unwrap_or_default();
            Err(ApiError::new(status, code, message))
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
    let error = rec.error().map(|(code, message)| ErrorDetail {
        code,
        message,
        target: None,
        details: None,
    });
    let progress: Option<ImportProgress> = rec
        .progress_json()
        .and_then(|p| serde_json::from_value(p.clone()).ok());
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
