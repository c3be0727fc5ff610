//! What Azure clients need around the registry API to work offline against the emulator: the
//! cloud metadata document (`az cloud register`), a managed-identity token endpoint
//! (`az login --identity`, azure-identity's `ManagedIdentityCredential`), the subscription list
//! (`az login` picks its default subscription there), resource lookup by type (what `az acr`
//! uses to find a registry's resource group) and resource groups.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use acr_core::arm::REGISTRY_TYPE;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::ArmPath;
use crate::imports::public_base;
use crate::{AppState, ListenerScheme};

/// The identity tokens are minted for and signed with.
#[derive(Clone)]
pub struct IdentityConfig {
    /// `oid` of the system-assigned identity (a request may name another with `object_id`).
    pub object_id: String,
    /// HS256 key of the tokens.
    pub signing_key: std::sync::Arc<Vec<u8>>,
    pub token_lifetime: Duration,
}

impl std::fmt::Debug for IdentityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityConfig")
            .field("object_id", &self.object_id)
            .field("signing_key", &"***")
            .field("token_lifetime", &self.token_lifetime)
            .finish()
    }
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

/// Claims of the tokens we mint (and read back in `--auth arm-rbac`).
#[derive(Debug, Serialize, Deserialize)]
struct MintedClaims {
    aud: String,
    iss: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    oid: String,
    sub: String,
    tid: String,
    appid: String,
    idtyp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    xms_mirid: Option<String>,
}

/// `GET /metadata/identity/oauth2/token`: what `IDENTITY_ENDPOINT` points at. Needs the
/// `X-IDENTITY-HEADER` (App Service) or `Metadata: true` (IMDS) header, as Azure does.
#[utoipa::path(get, path = "/metadata/identity/oauth2/token", tag = "cloud",
    params(("api-version" = Option<String>, Query),
           ("resource" = String, Query, description = "Audience of the token (the ARM endpoint)"),
           ("object_id" = Option<String>, Query, description = "Principal (oid) of a user-assigned identity"),
           ("client_id" = Option<String>, Query), ("mi_res_id" = Option<String>, Query)),
    responses((status = 200, description = "A JWT for the identity", body = TokenResponse),
              (status = 400, description = "Missing header or resource", body = acr_core::wire::ErrorResponse)))]
pub async fn identity_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
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
        .filter(|r| !r.trim().is_empty() && r.len() <= 2048)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_resource",
                "The 'resource' query parameter is required.",
            )
        })?;
    let id = &state.config.identity;
    let oid = match &q.object_id {
        Some(o) => uuid::Uuid::parse_str(o)
            .map(|u| u.hyphenated().to_string())
            .map_err(|_| ApiError::bad_request("invalid_request", "'object_id' must be a GUID."))?,
        None => id.object_id.clone(),
    };
    let client_id = q.client_id.clone().unwrap_or_else(|| oid.clone());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let exp = now + id.token_lifetime.as_secs();
    let claims = MintedClaims {
        aud: resource.clone(),
        iss: format!("https://sts.windows.net/{}/", state.config.tenant_id),
        iat: now,
        nbf: now.saturating_sub(300),
        exp,
        oid: oid.clone(),
        sub: oid,
        tid: state.config.tenant_id.clone(),
        appid: client_id.clone(),
        idtyp: "app".into(),
        xms_mirid: q.mi_res_id.clone(),
    };
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&id.signing_key),
    )
    .map_err(|_| ApiError::internal())?;
    Ok(Json(TokenResponse {
        access_token: token,
        expires_on: exp.to_string(),
        expires_in: id.token_lifetime.as_secs().to_string(),
        not_before: claims.nbf.to_string(),
        resource,
        token_type: "Bearer".into(),
        client_id,
    }))
}

/// Verifies a token signed with our key (signature, expiry) and returns its `oid`.
pub fn verify_minted(state: &AppState, token: &str) -> Result<String, String> {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    /// What verification needs of the claims (the rest is read by `rbac::decode_jwt_claims`).
    #[derive(Deserialize)]
    struct Signed {
        oid: String,
    }
    jsonwebtoken::decode::<Signed>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(&state.config.identity.signing_key),
        &validation,
    )
    .map(|d| d.claims.oid)
    .map_err(|e| e.to_string())
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

/// Reads `resourceType eq '…'` (and `name eq '…'`, joined by `and`) out of a `$filter`.
fn parse_filter(f: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for clause in f.split(" and ") {
        let clause = clause.trim();
        if clause.is_empty() {
            continue;
        }
        let (field, value) = clause
            .split_once(" eq ")
            .map(|(a, b)| (a.trim(), b.trim()))
            .filter(|(_, b)| b.len() >= 2 && b.starts_with('\'') && b.ends_with('\''))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "InvalidFilterInQueryString",
                    format!(
                        "Invalid $filter '{}': only \"resourceType eq '…'\" and \"name eq '…'\" clauses joined by 'and' are supported.",
                        acr_core::reference::truncate(f)
                    ),
                )
            })?;
        let field = field.to_ascii_lowercase();
        if field != "resourcetype" && field != "name" {
            return Err(ApiError::bad_request(
                "InvalidFilterInQueryString",
                format!("The $filter field '{field}' is not supported; use resourceType or name."),
            ));
        }
        out.insert(field, value[1..value.len() - 1].to_owned());
    }
    Ok(out)
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
    caller: Option<axum::Extension<crate::auth::Caller>>,
    Query(q): Query<ResourcesQuery>,
) -> Result<Json<Value>, ApiError> {
    let caller = caller
        .map(|axum::Extension(c)| c)
        .unwrap_or_else(crate::auth::Caller::anonymous);
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
