//! The one mapping from failures to ARM error responses.

use acr_core::Invalid;
use acr_store::StoreError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use acr_core::wire::{ErrorDetail, ErrorResponse};

/// An error answered as `{"error":{"code","message","target"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub target: Option<String>,
    /// Seconds for a `Retry-After` header (503, 429).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            target: None,
            retry_after: None,
        }
    }

    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A validation failure of a request field.
    pub fn invalid(code: &str, e: Invalid) -> Self {
        Self::bad_request(code, e.message).with_target(e.target)
    }

    /// ARM's wording for a missing resource.
    pub fn resource_not_found(resource_type: &str, name: &str, resource_group: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    }

    /// A subscription id path parameter: the canonical UUID, or `InvalidSubscriptionId`.
    pub fn subscription(s: &str) -> Result<String, Self> {
        acr_core::arm::validate_subscription(s)
            .map_err(|e| Self::invalid("InvalidSubscriptionId", e))
    }

    /// 409: the registry is being deleted (its DELETE is running); nothing else may be done
    /// with it, and its name is not free until the deletion ends.
    pub fn registry_deleting(name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "RegistryBeingDeleted",
            format!(
                "The registry '{name}' is being deleted. Retry after its deletion has finished."
            ),
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "The server encountered an internal error. Please retry the request.",
        )
    }

    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorDetail {
                code: self.code.clone(),
                message: self.message.clone(),
                target: self.target.clone(),
                details: None,
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, cause = ?std::error::Error::source(&e), "database unavailable");
                let mut err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The service is temporarily unable to reach its database. Please retry the request.",
                );
                err.retry_after = Some(5);
                err
            }
            StoreError::Limit(limit) => {
                tracing::info!(%limit, "import refused: queue limit reached");
                let mut err = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    limit.to_string(),
                );
                err.retry_after = Some(10);
                err
            }
            _ => {
                tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "storage failure");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        resp
    }
}
