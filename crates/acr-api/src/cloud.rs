//! What Azure clients need around the registry API to work offline against the emulator: the
//! cloud metadata document (`az cloud register`), a managed-identity token endpoint
//! (`az login --identity`, azure-identity's `ManagedIdentityCredential`), the subscription list
//! (`az login` picks its default subscription there), resource lookup by type (what `az acr`
//! uses to find a registry's resource group) and resource groups.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use acr_core::arm::REGISTRY_TYPE;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::Caller;
use crate::error::ApiError;
use crate::extract::{ArmPath, ArmQuery};
use crate::tokens::{self, TokenRequest};
use crate::urls::public_base;
use crate::{AppState, ListenerScheme};

/// Longest `resource` of a managed-identity token request, in characters.
pub(crate) const MAX_RESOURCE_CHARS: usize = 2048;

/// What "Resources - List" takes as `$filter`: `resourceType eq '…'` and `name eq '…'` clauses
/// joined by ` and ` (values without quotes or spaces). The handler matches this pattern before
/// it reads the clauses, and the OpenAPI document declares it.
pub(crate) const FILTER_PATTERN: &str =
    r"^(?:resourceType|name) eq '[^' ]*'(?: and (?:resourceType|name) eq '[^' ]*')*$";

static FILTER: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(FILTER_PATTERN).expect("static regex"));

/// The routes of this module, each with its OpenAPI entry.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metadata_endpoints))
        .routes(routes!(identity_token))
        .routes(routes!(list_subscriptions))
        .routes(routes!(get_subscription))
        .routes(routes!(list_resources))
}

/// `GET /metadata/endpoints`: the cloud document `az cloud register` reads (the *object* form:
/// `name`, `authentication.loginEndpoint`, `authentication.audiences`, `suffixes` are required by
/// the CLI; the rest mirrors Azure's document with every endpoint pointing at us).
#[utoipa::path(get, path = "/metadata/endpoints", tag = "cloud",
    params(("api-version" = Option<String>, Query, description = "Any version is accepted")),
    responses((status = 200, description = "The cloud metadata document", body = Object)))]
pub async fn metadata_endpoints(
    State(state): State<AppState>,
    scheme: Option<axum::Extension<ListenerScheme>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let base = format!("{}/", public_base(&state, scheme.as_deref(), &headers)?);
    Ok(Json(json!({
        "name": "AcrImport",
        "resourceManager": base,
        "portal": base,
        "gallery": base,
        "graph": base,
        "graphAudience": base,
        "microsoftGraphResourceId": base,
        "sqlManagement": base,
        "batch": base,
        "media": base,
        "activeDirectoryDataLake": base,
        "vmImageAliasDoc": base,
        "authentication": {
            "loginEndpoint": base,
            "audiences": [base],
            "tenant": "common",
            "identityProvider": "AAD"
        },
        "suffixes": {
            "acrLoginServer": state.config.login_server_suffix,
            "keyVaultDns": "vault.azure.net",
            "storage": "core.windows.net",
            "sqlServerHostname": "database.windows.net"
        }
    })))
}

/// Query of the managed-identity token request.
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    resource: Option<String>,
    object_id: Option<String>,
    client_id: Option<String>,
    mi_res_id: Option<String>,
}

/// The managed-identity token answer (App Service / IMDS shape; `expires_on` in epoch seconds).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub expires_on: String,
    pub expires_in: String,
    pub not_before: String,
    pub resource: String,
    pub token_type: String,
    pub client_id: String,
}

/// `GET /metadata/identity/oauth2/token`: what `IDENTITY_ENDPOINT` points at. Needs the
/// `X-IDENTITY-HEADER` (App Service) or `Metadata: true` (IMDS) header, as Azure does.
#[utoipa::path(get, path = "/metadata/identity/oauth2/token", tag = "cloud",
    description = "Requires `Metadata: true` (IMDS) or, instead, any `X-IDENTITY-HEADER` (App Service, what `az login --identity` sends with IDENTITY_HEADER); without either: 400 `invalid_request`.",
    params(("Metadata" = String, Header, description = "`true` (IMDS); an `X-IDENTITY-HEADER` with any value may be sent instead"),
           ("api-version" = Option<String>, Query),
           ("resource" = String, Query, description = "Audience of the token (the ARM endpoint)"),
           ("object_id" = Option<String>, Query, description = "Principal (oid) of a user-assigned identity (a GUID)"),
           ("client_id" = Option<String>, Query), ("mi_res_id" = Option<String>, Query)),
    responses((status = 200, description = "A JWT for the identity", body = TokenResponse),
              (status = 400, description = "Missing header or resource", body = acr_core::wire::ErrorResponse)))]
pub async fn identity_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    ArmQuery(q): ArmQuery<TokenQuery>,
) -> Result<Json<TokenResponse>, ApiError> {
    let has_header = headers.contains_key("x-identity-header")
        || headers
            .get("metadata")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !has_header {
        return Err(ApiError::bad_request(
            "invalid_request",
            "Required metadata header not specified: send 'X-IDENTITY-HEADER' or 'Metadata: true'.",
        ));
    }
    let resource = q
        .resource
        .filter(|r| !r.trim().is_empty() && r.chars().count() <= MAX_RESOURCE_CHARS)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_resource",
                "The 'resource' query parameter is required.",
            )
        })?;
    let id = &state.config.identity;
    let oid = match &q.object_id {
        // The hyphenated form only (`format: uuid`), as a subscription id.
        Some(o) => uuid::Uuid::parse_str(o)
            .ok()
            .filter(|_| o.len() == 36)
            .map(|u| u.hyphenated().to_string())
            .ok_or_else(|| {
                ApiError::bad_request("invalid_request", "'object_id' must be a GUID.")
            })?,
        None => id.object_id.clone(),
    };
    let client_id = q.client_id.clone().unwrap_or_else(|| oid.clone());
    let minted = tokens::mint(
        id,
        &TokenRequest {
            resource: &resource,
            tenant_id: &state.config.tenant_id,
            oid: &oid,
            client_id: &client_id,
            mi_res_id: q.mi_res_id.as_deref(),
        },
    )
    .map_err(|_| ApiError::internal())?;
    Ok(Json(TokenResponse {
        access_token: minted.token,
        expires_on: minted.expires_on.to_string(),
        expires_in: id.token_lifetime.as_secs().to_string(),
        not_before: minted.not_before.to_string(),
        resource,
        token_type: "Bearer".into(),
        client_id,
    }))
}

fn subscription_json(state: &AppState, id: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{id}"),
        "subscriptionId": id,
        "tenantId": state.config.tenant_id,
        "displayName": format!("acr-import {id}"),
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "Internal_2014-09-01",
            "spendingLimit": "Off"
        },
        "authorizationSource": "RoleBased",
        "managedByTenants": []
    })
}

/// The configured subscriptions first, then every other one that holds a registry.
async fn subscriptions(state: &AppState) -> Result<Vec<String>, ApiError> {
    let mut all = state.config.subscriptions.clone();
    for s in state.store.registry_subscriptions().await? {
        if !all.contains(&s) {
            all.push(s);
        }
    }
    Ok(all)
}

/// `GET /subscriptions`.
#[utoipa::path(get, path = "/subscriptions", tag = "cloud",
    params(("api-version" = Option<String>, Query)),
    responses((status = 200, description = "The subscriptions: the configured ones and those that hold registries", body = Object)))]
pub async fn list_subscriptions(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let value: Vec<Value> = subscriptions(&state)
        .await?
        .iter()
        .map(|s| subscription_json(&state, s))
        .collect();
    Ok(Json(json!({ "value": value })))
}

/// `GET /subscriptions/{subscriptionId}`.
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}", tag = "cloud",
    params(("subscriptionId" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, description = "The subscription", body = Object),
              (status = 404, description = "Unknown subscription", body = acr_core::wire::ErrorResponse)))]
pub async fn get_subscription(
    State(state): State<AppState>,
    ArmPath(sub): ArmPath<String>,
) -> Result<Json<Value>, ApiError> {
    let sub = ApiError::subscription(&sub)?;
    if !subscriptions(&state).await?.contains(&sub) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        ));
    }
    Ok(Json(subscription_json(&state, &sub)))
}

/// Query of "Resources - List".
#[derive(Debug, Deserialize)]
pub struct ResourcesQuery {
    #[serde(rename = "$filter")]
    filter: Option<String>,
}

/// Reads `resourceType eq '…'` (and `name eq '…'`, joined by `and`) out of a `$filter` that
/// matches [`FILTER_PATTERN`].
fn parse_filter(f: &str) -> Result<BTreeMap<String, String>, ApiError> {
    if !FILTER.is_match(f) {
        return Err(ApiError::bad_request(
            "InvalidFilterInQueryString",
            format!(
                "Invalid $filter '{}': only \"resourceType eq '…'\" and \"name eq '…'\" clauses joined by 'and' are supported.",
                acr_core::reference::truncate(f)
            ),
        ));
    }
    // The pattern makes every clause `<field> eq '<value>'`, the value without quotes or spaces.
    Ok(f.split(" and ")
        .filter_map(|clause| clause.split_once(" eq "))
        .map(|(field, value)| {
            (
                field.to_ascii_lowercase(),
                value.trim_matches('\'').to_owned(),
            )
        })
        .collect())
}

/// `GET /subscriptions/{sub}/resources`: the emulated registries as generic resources
/// (`az acr` finds a registry's resource group through this list).
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resources", tag = "cloud",
    params(("subscriptionId" = String, Path), ("$filter" = Option<String>, Query), ("api-version" = Option<String>, Query)),
    responses((status = 200, description = "Generic resources", body = Object),
              (status = 400, description = "Unsupported filter", body = acr_core::wire::ErrorResponse)))]
pub async fn list_resources(
    State(state): State<AppState>,
    ArmPath(sub): ArmPath<String>,
    caller: Caller,
    ArmQuery(q): ArmQuery<ResourcesQuery>,
) -> Result<Json<Value>, ApiError> {
    let sub = ApiError::subscription(&sub)?;
    let filter = q
        .filter
        .as_deref()
        .map(parse_filter)
        .transpose()?
        .unwrap_or_default();
    if filter
        .get("resourcetype")
        .is_some_and(|t| !t.eq_ignore_ascii_case(REGISTRY_TYPE))
    {
        return Ok(Json(json!({ "value": [] })));
    }
    let list = state.store.list_registries(&sub, None).await?;
    let value: Vec<Value> = crate::registries::visible(&state, &caller, &list)
        .into_iter()
        .filter(|w| {
            filter
                .get("name")
                .is_none_or(|n| n.eq_ignore_ascii_case(&w.name))
        })
        .map(|w| {
            json!({
                "id": w.id,
                "name": w.name,
                "type": w.type_,
                "location": w.location,
                "tags": w.tags.unwrap_or_default(),
                "sku": w.sku,
            })
        })
        .collect();
    Ok(Json(json!({ "value": value })))
}
