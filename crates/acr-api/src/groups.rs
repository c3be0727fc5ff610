//! Resource groups, so that `az group create/show/list/delete` work: `PUT`, `GET`, `HEAD`,
//! `DELETE` of `/subscriptions/{sub}/resourcegroups/{rg}` and the list of a subscription. A
//! group exists once created, or while it holds registries (registries may still be created
//! in a group never created). Deleting one deletes its registries, each as its own
//! long-running deletion; the group's deletion answers 202 with a status URL, as ARM does, and
//! the group answers 404 once they are gone.

use std::collections::BTreeMap;

use acr_store::{GroupPut, NewOperation, ResourceGroup, Work};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::{authorize, Caller};
use crate::error::ApiError;
use crate::extract::{ArmJson, ArmPath, RawApiVersion};
use crate::{AppState, ListenerScheme};

const READ: &str = "Microsoft.Resources/subscriptions/resourceGroups/read";
const WRITE: &str = "Microsoft.Resources/subscriptions/resourceGroups/write";
const DELETE: &str = "Microsoft.Resources/subscriptions/resourceGroups/delete";

/// The routes of this module, each with its OpenAPI entry (HEAD of a group is its GET).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_group, put_group, delete_group))
        .routes(routes!(list_groups))
}

/// The body of `PUT …/resourcegroups/{rg}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ResourceGroupParameters {
    /// The region, e.g. `eastus`.
    pub location: String,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
}

fn wire(sub: &str, g: &ResourceGroup) -> Value {
    json!({
        "id": format!("/subscriptions/{sub}/resourceGroups/{}", g.name),
        "name": g.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": g.location,
        "tags": g.tags.clone().unwrap_or_default(),
        "properties": {"provisioningState": if g.deleting { "Deleting" } else { "Succeeded" }},
    })
}

fn group_id(sub: &str, rg: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}")
}

fn not_found(rg: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ResourceGroupNotFound",
        format!("Resource group '{rg}' could not be found."),
    )
}

/// Microsoft.Resources has api-versions of its own: any is accepted, none is not.
fn resources_api_version(v: &RawApiVersion) -> Result<(), ApiError> {
    match v.0.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => Ok(()),
        _ => Err(ApiError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )),
    }
}

/// The api-version of a group deletion's status URLs (served by the registry provider).
const STATUS_API_VERSION: &str = "2025-11-01";

fn check(sub: &str, rg: &str) -> Result<String, ApiError> {
    let sub = ApiError::subscription(sub)?;
    acr_core::arm::validate_resource_group(rg)
        .map_err(|e| ApiError::invalid("InvalidResourceGroupName", e))?;
    Ok(sub)
}

/// Create or update a resource group.
#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}", tag = "cloud",
    operation_id = "ResourceGroups_CreateOrUpdate",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("api-version" = String, Query)),
    request_body = ResourceGroupParameters,
    responses((status = 201, description = "Created", body = Object),
              (status = 200, description = "Updated", body = Object),
              (status = "default", description = "Error", body = acr_core::wire::ErrorResponse)))]
pub async fn put_group(
    State(state): State<AppState>,
    ArmPath((sub, rg)): ArmPath<(String, String)>,
    version: RawApiVersion,
    caller: Caller,
    ArmJson(body): ArmJson<ResourceGroupParameters>,
) -> Result<Response, ApiError> {
    resources_api_version(&version)?;
    let sub = check(&sub, &rg)?;
    authorize(&state, &caller, WRITE, &group_id(&sub, &rg))?;
    crate::registries::validate_tags(body.tags.as_ref())?;
    let location = acr_core::arm::normalize_location(&body.location).ok_or_else(|| {
        ApiError::bad_request(
            "LocationRequired",
            "The location property is required and must be an Azure region name such as 'eastus'.",
        )
        .with_target("location")
    })?;
    let status = match state
        .store
        .put_resource_group(&sub, &rg, &location, body.tags.as_ref())
        .await?
    {
        GroupPut::Created => StatusCode::CREATED,
        GroupPut::Updated => StatusCode::OK,
        GroupPut::Deleting => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "ResourceGroupBeingDeleted",
                format!("The resource group '{rg}' is in deprovisioning state and cannot perform this operation."),
            ))
        }
    };
    let g = state
        .store
        .get_group(&sub, &rg)
        .await?
        .ok_or_else(ApiError::internal)?;
    Ok((status, Json(wire(&sub, &g))).into_response())
}

/// Get a resource group (404 when it was never created and holds no registry).
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}", tag = "cloud",
    operation_id = "ResourceGroups_Get",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, description = "The resource group", body = Object),
              (status = "default", description = "Error", body = acr_core::wire::ErrorResponse)))]
pub async fn get_group(
    State(state): State<AppState>,
    ArmPath((sub, rg)): ArmPath<(String, String)>,
    caller: Caller,
    method: axum::http::Method,
) -> Result<Response, ApiError> {
    let sub = check(&sub, &rg)?;
    authorize(&state, &caller, READ, &group_id(&sub, &rg))?;
    let g = state.store.get_group(&sub, &rg).await?;
    if method == axum::http::Method::HEAD {
        // `az group exists`: 204 or 404, no body.
        return Ok(match g {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        });
    }
    let g = g.ok_or_else(|| not_found(&rg))?;
    Ok(Json(wire(&sub, &g)).into_response())
}

/// The resource groups of a subscription.
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups", tag = "cloud",
    operation_id = "ResourceGroups_List",
    params(("subscriptionId" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, description = "The resource groups", body = Object),
              (status = "default", description = "Error", body = acr_core::wire::ErrorResponse)))]
pub async fn list_groups(
    State(state): State<AppState>,
    ArmPath(sub): ArmPath<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let sub = ApiError::subscription(&sub)?;
    let groups = state.store.list_groups(&sub).await?;
    let value: Vec<Value> = groups
        .iter()
        .filter(|g| authorize(&state, &caller, READ, &group_id(&sub, &g.name)).is_ok())
        .map(|g| wire(&sub, g))
        .collect();
    Ok(Json(json!({ "value": value })))
}

/// Delete a resource group and its registries (202 with the operation's URLs).
#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}", tag = "cloud",
    operation_id = "ResourceGroups_Delete",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("api-version" = String, Query)),
    responses((status = 202, description = "Deleting; poll the Location URL",
               headers(("Location" = String, description = "Operation result URL"),
                       ("Retry-After" = u32, description = "Seconds to wait before polling"))),
              (status = "default", description = "Error", body = acr_core::wire::ErrorResponse)),
    extensions(("x-ms-long-running-operation" = json!(true))))]
pub async fn delete_group(
    State(state): State<AppState>,
    ArmPath((sub, rg)): ArmPath<(String, String)>,
    version: RawApiVersion,
    caller: Caller,
    scheme: Option<Extension<ListenerScheme>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    resources_api_version(&version)?;
    let api_version = STATUS_API_VERSION;
    let sub = check(&sub, &rg)?;
    authorize(&state, &caller, DELETE, &group_id(&sub, &rg))?;
    let group = state
        .store
        .get_group(&sub, &rg)
        .await?
        .ok_or_else(|| not_found(&rg))?;
    // Every registry of the group gets its own deletion (RBAC: deleting the group deletes
    // what is in it, as in ARM).
    for r in state.store.list_registries(&sub, Some(&group.name)).await? {
        crate::registries::start_deletion(&state, &r.id(), api_version).await?;
    }
    let op = NewOperation {
        id: format!("registries-{}", uuid::Uuid::new_v4().hyphenated()),
        subscription_id: sub.clone(),
        resource_group: group.name.clone(),
        registry_name: String::new(),
        location: group.location.clone(),
        api_version: api_version.to_owned(),
        work: Work::DeleteResourceGroup,
        credentials: None,
    };
    let rec = state.store.begin_group_deletion(&sub, &group, &op).await?;
    tracing::info!(operation.id = %rec.id, group = %group.name, "resource group deletion started");
    crate::urls::accepted(&state, scheme.as_deref(), &headers, &rec)
}
