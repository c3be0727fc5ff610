//! Registry resources: PUT, GET, DELETE, list.

use std::collections::BTreeMap;

use acr_core::arm::{ApiSurface, RegistryId, REGISTRY_TYPE};
use acr_core::wire::{
    NetworkRuleSet, Registry, RegistryCreateParameters, RegistryListCredentialsResult,
    RegistryListResult, RegistryNameCheckRequest, RegistryNameStatus, RegistryPassword,
    RegistryProperties, RegistryUpdateParameters, Sku, SkuName, SystemData,
};
use acr_store::{RegistryProps, RegistryRecord, Upserted};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::{authorize, Caller};
use crate::error::ApiError;
use crate::extract::{ArmJson, ArmPath, RawApiVersion};
use crate::registry_path::{RegistryPath, TargetRegistry};
use crate::AppState;

const READ: &str = "Microsoft.ContainerRegistry/registries/read";
const WRITE: &str = "Microsoft.ContainerRegistry/registries/write";
const DELETE: &str = "Microsoft.ContainerRegistry/registries/delete";
const LIST_CREDENTIALS: &str = "Microsoft.ContainerRegistry/registries/listCredentials/action";

/// The routes of this module, each with its OpenAPI entry.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            get_registry,
            put_registry,
            update_registry,
            delete_registry
        ))
        .routes(routes!(list_credentials))
        .routes(routes!(list_by_group))
        .routes(routes!(list_by_subscription))
        .routes(routes!(check_name_availability))
}

/// The registries of `list` the caller may read (all of them unless `--auth arm-rbac`).
pub(crate) fn visible(state: &AppState, caller: &Caller, list: &[RegistryRecord]) -> Vec<Registry> {
    list.iter()
        .map(|r| to_wire(r, &state.config.login_server_suffix))
        .filter(|w| authorize(state, caller, READ, &w.id).is_ok())
        .collect()
}

/// The ARM view of a stored registry.
pub(crate) fn to_wire(r: &RegistryRecord, suffix: &str) -> Registry {
    let id = r.id();
    let sku = SkuName::parse(&r.sku).unwrap_or(SkuName::Standard);
    let p = r.props();
    let or = |s: &str, d: &str| {
        if s.is_empty() {
            d.to_owned()
        } else {
            s.to_owned()
        }
    };
    Registry {
        id: id.to_string(),
        name: r.name.clone(),
        type_: REGISTRY_TYPE.to_owned(),
        location: r.location.clone(),
        tags: r.tags().cloned(),
        sku: Sku {
            name: sku,
            tier: sku,
        },
        properties: RegistryProperties {
            login_server: format!("{}.{suffix}", r.name_lower),
            creation_date: r.created_at,
            provisioning_state: if r.deleting() {
                "Deleting"
            } else {
                "Succeeded"
            }
            .to_owned(),
            admin_user_enabled: p.admin_user_enabled,
            network_rule_set: p.network_rule_set.clone(),
            public_network_access: p.public_network_access.clone(),
            network_rule_bypass_options: p.network_rule_bypass_options.clone(),
            anonymous_pull_enabled: p.anonymous_pull_enabled,
            data_endpoint_enabled: p.data_endpoint_enabled,
            data_endpoint_host_names: Vec::new(),
            role_assignment_mode: p.role_assignment_mode.clone(),
            zone_redundancy: p.zone_redundancy.clone(),
            policies: p.policies.clone(),
            encryption: serde_json::json!({"status": "disabled"}),
            private_endpoint_connections: Vec::new(),
        },
        system_data: SystemData {
            created_by: or(&p.created_by, "acr-import"),
            created_by_type: or(&p.created_by_type, "Key"),
            created_at: r.created_at,
            last_modified_by: or(&p.last_modified_by, "acr-import"),
            last_modified_by_type: or(&p.last_modified_by_type, "Key"),
            last_modified_at: r.updated_at,
        },
    }
}

fn props_from(
    body: Option<&serde_json::Value>,
    current: Option<&RegistryProps>,
) -> Result<RegistryProps, ApiError> {
    let mut p = current.cloned().unwrap_or_default();
    let Some(obj) = body.and_then(|b| b.as_object()) else {
        if body.is_some_and(|b| !b.is_null()) {
            return Err(ApiError::bad_request(
                "InvalidRequestContent",
                "'properties' must be an object.",
            )
            .with_target("properties"));
        }
        stamp_retention(&mut p);
        return Ok(p);
    };
    let get_bool = |k: &str| -> Result<Option<bool>, ApiError> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::bad_request(
                "InvalidRequestContent",
                format!("'properties.{k}' must be a boolean."),
            )
            .with_target(format!("properties.{k}"))),
        }
    };
    let get_enum = |k: &str, allowed: &[&'static str]| -> Result<Option<String>, ApiError> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => allowed
                .iter()
                .find(|a| a.eq_ignore_ascii_case(s))
                .map(|a| Some((*a).to_owned()))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "InvalidParameter",
                        format!(
                            "The value '{}' is not valid for 'properties.{k}'. Allowed values: {}.",
                            acr_core::reference::truncate(s),
                            allowed.join(", ")
                        ),
                    )
                    .with_target(format!("properties.{k}"))
                }),
            Some(_) => Err(ApiError::bad_request(
                "InvalidRequestContent",
                format!("'properties.{k}' must be a string."),
            )
            .with_target(format!("properties.{k}"))),
        }
    };
    if let Some(b) = get_bool("adminUserEnabled")? {
        p.admin_user_enabled = b;
    }
    if let Some(b) = get_bool("anonymousPullEnabled")? {
        p.anonymous_pull_enabled = b;
    }
    if let Some(s) = get_enum("publicNetworkAccess", &["Enabled", "Disabled"])? {
        p.public_network_access = s;
    }
    if let Some(s) = get_enum("networkRuleBypassOptions", &["AzureServices", "None"])? {
        p.network_rule_bypass_options = s;
    }
    if let Some(s) = get_enum("zoneRedundancy", &["Enabled", "Disabled"])? {
        p.zone_redundancy = s;
    }
    if let Some(b) = get_bool("dataEndpointEnabled")? {
        p.data_endpoint_enabled = b;
    }
    if let Some(s) = get_enum(
        "roleAssignmentMode",
        &["LegacyRegistryPermissions", "AbacRepositoryPermissions"],
    )? {
        p.role_assignment_mode = s;
    }
    if let Some(v) = obj.get("policies").filter(|v| !v.is_null()) {
        p.policies = acr_core::policies::merge(&p.policies, v, chrono::Utc::now())
            .map_err(|e| ApiError::invalid(e.code, e.invalid))?;
    }
    match obj.get("networkRuleSet") {
        None | Some(serde_json::Value::Null) => {}
        Some(v) => {
            let set: NetworkRuleSet = serde_json::from_value(v.clone()).map_err(|e| {
                ApiError::bad_request(
                    "InvalidRequestContent",
                    format!("'properties.networkRuleSet' is invalid: {e}"),
                )
                .with_target("properties.networkRuleSet")
            })?;
            let action = ["Allow", "Deny"]
                .iter()
                .find(|a| a.eq_ignore_ascii_case(&set.default_action))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "InvalidParameter",
                        "The value of 'properties.networkRuleSet.defaultAction' must be 'Allow' or 'Deny'.",
                    )
                    .with_target("properties.networkRuleSet.defaultAction")
                })?;
            for (i, rule) in set.ip_rules.iter().enumerate() {
                if !rule.action.eq_ignore_ascii_case("Allow") || !valid_ip_rule(&rule.value) {
                    return Err(ApiError::bad_request(
                        "InvalidIpRule",
                        format!(
                            "properties.networkRuleSet.ipRules[{i}] must be {{\"action\": \"Allow\", \"value\": <IPv4 address or CIDR range>}}; got '{}'.",
                            acr_core::reference::truncate(&rule.value)
                        ),
                    )
                    .with_target(format!("properties.networkRuleSet.ipRules[{i}]")));
                }
            }
            p.network_rule_set = NetworkRuleSet {
                default_action: (*action).to_owned(),
                ip_rules: set
                    .ip_rules
                    .into_iter()
                    .map(|r| acr_store::IpRule {
                        action: "Allow".into(),
                        value: r.value,
                    })
                    .collect(),
            };
        }
    }
    stamp_retention(&mut p);
    Ok(p)
}

/// ACR stamps the retention policy when the registry is created (and a registry stored before
/// policies were kept gets its stamp on its first write).
fn stamp_retention(p: &mut RegistryProps) {
    p.policies
        .retention_policy
        .last_updated_time
        .get_or_insert_with(chrono::Utc::now);
}

/// The retention policy is a Premium feature in ACR (`az acr config retention` refuses other
/// SKUs before it calls ARM): enabling it on another SKU, or leaving Premium with it enabled,
/// is refused.
fn check_policies_sku(sku: SkuName, p: &RegistryProps) -> Result<(), ApiError> {
    if p.policies.retention_policy.enabled() && sku != SkuName::Premium {
        return Err(ApiError::bad_request(
            "PolicyNotSupported",
            format!(
                "Policies are only supported for managed registries in Premium SKU: the retention policy cannot be enabled on a registry with the {} SKU.",
                sku.as_str()
            ),
        )
        .with_target("properties.policies.retentionPolicy.status"));
    }
    Ok(())
}

/// `a.b.c.d` or `a.b.c.d/n`.
fn valid_ip_rule(v: &str) -> bool {
    let (ip, bits) = match v.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (v, None),
    };
    ip.parse::<std::net::Ipv4Addr>().is_ok()
        && bits.is_none_or(|b| b.parse::<u8>().is_ok_and(|n| n <= 32))
}

/// Most tags of a registry, longest tag name and value (characters).
pub(crate) const MAX_TAGS: usize = 50;
pub(crate) const MAX_TAG_NAME_CHARS: usize = 512;
pub(crate) const MAX_TAG_VALUE_CHARS: usize = 256;

/// What a tag name or value may not hold: NUL (PostgreSQL's text and jsonb refuse it).
pub(crate) const TAG_TEXT_PATTERN: &str = "^[^\\x00]*$";

pub(crate) fn validate_tags(tags: Option<&BTreeMap<String, String>>) -> Result<(), ApiError> {
    if let Some(tags) = tags {
        if tags.len() > MAX_TAGS
            || tags.iter().any(|(k, v)| {
                k.is_empty()
                    || k.chars().count() > MAX_TAG_NAME_CHARS
                    || v.chars().count() > MAX_TAG_VALUE_CHARS
                    || k.contains('\0')
                    || v.contains('\0')
            })
        {
            return Err(ApiError::bad_request("InvalidTag", "At most 50 tags are allowed; tag names are 1-512 characters and values at most 256, without NUL.").with_target("tags"));
        }
    }
    Ok(())
}

fn parse_sku(name: &str) -> Result<SkuName, ApiError> {
    SkuName::parse(name).ok_or_else(|| {
        ApiError::bad_request(
            "InvalidSku",
            format!(
                "The SKU '{}' is not valid. Allowed values: Classic, Basic, Standard, Premium.",
                acr_core::reference::truncate(name)
            ),
        )
        .with_target("sku.name")
    })
}

fn stamp_modified(p: &mut RegistryProps, caller: &Caller, created: bool) {
    p.last_modified_by = caller.display();
    p.last_modified_by_type = caller.kind.to_owned();
    if created || p.created_by.is_empty() {
        p.created_by = caller.display();
        p.created_by_type = caller.kind.to_owned();
    }
}

/// Create or update a registry.
#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}",
    operation_id = "Registries_Create", tag = "registries",
    params(("subscriptionId" = String, Path, description = "Subscription id (a UUID)"),
           ("resourceGroupName" = String, Path, description = "Resource group name"),
           ("registryName" = String, Path, description = "Registry name: 5-50 alphanumerics", min_length = 5, max_length = 50, pattern = "^[a-zA-Z0-9]*$"),
           ("api-version" = String, Query, description = "API version")),
    request_body = RegistryCreateParameters,
    responses((status = 200, description = "Updated", body = Registry),
              (status = 201, description = "Created", body = Registry),
              (status = "default", description = "Error", body = acr_core::wire::ErrorResponse)))]
pub async fn put_registry(
    State(state): State<AppState>,
    path: RegistryPath,
    ArmJson(body): ArmJson<RegistryCreateParameters>,
) -> Result<Response, ApiError> {
    let TargetRegistry { id, caller, .. } =
        path.check(ApiSurface::Registry)?.authorize(&state, WRITE)?;
    let location = acr_core::arm::normalize_location(&body.location).ok_or_else(|| {
        ApiError::bad_request(
            "LocationRequired",
            "The location property is required and must be an Azure region name such as 'eastus'.",
        )
        .with_target("location")
    })?;
    let sku = parse_sku(&body.sku.name)?;
    validate_tags(body.tags.as_ref())?;
    let existing = state
        .store
        .get_registry(&id.subscription, &id.resource_group, &id.name)
        .await?;
    if let Some(e) = &existing {
        if e.location != location {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "InvalidResourceLocation",
                format!(
                    "The resource '{}' already exists in location '{}' in resource group '{}'. A resource with the same name cannot be created in location '{location}'. Please select a new resource name.",
                    id.name, e.location, id.resource_group
                ),
            ));
        }
    }
    let mut props = props_from(
        body.properties.as_ref(),
        existing.as_ref().map(RegistryRecord::props),
    )?;
    check_policies_sku(sku, &props)?;
    stamp_modified(&mut props, &caller, existing.is_none());
    // An existing registry keeps the spelling of its name and of its group.
    let stored = RegistryId {
        subscription: id.subscription.clone(),
        resource_group: existing
            .as_ref()
            .map(|e| e.resource_group.clone())
            .unwrap_or_else(|| id.resource_group.clone()),
        name: existing
            .as_ref()
            .map(|e| e.name.clone())
            .unwrap_or_else(|| id.name.clone()),
    };
    let record = RegistryRecord::new(&stored, location, sku.as_str().to_owned(), body.tags, props);
    let status = match state.store.upsert_registry(&record).await? {
        Upserted::Created => StatusCode::CREATED,
        Upserted::Updated => StatusCode::OK,
        Upserted::Deleting => return Err(ApiError::registry_deleting(&id.name)),
        Upserted::NameTaken => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "AlreadyInUse",
                format!(
                    "The registry DNS name {}.{} is already in use. You can check if the name is already claimed using the checkNameAvailability API.",
                    id.name_lower(),
                    state.config.login_server_suffix
                ),
            ))
        }
    };
    let saved = state
        .store
        .get_registry(&id.subscription, &id.resource_group, &id.name)
        .await?
        .ok_or_else(ApiError::internal)?;
    Ok((
        status,
        Json(to_wire(&saved, &state.config.login_server_suffix)),
    )
        .into_response())
}

/// Get a registry.
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}",
    operation_id = "Registries_Get", tag = "registries",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("api-version" = String, Query)),
    responses((status = 200, description = "The registry", body = Registry),
              (status = "default", description = "Error", body = acr_core::wire::ErrorResponse)))]
pub async fn get_registry(
    State(state): State<AppState>,
    path: RegistryPath,
) -> Result<Json<Registry>, ApiError> {
    let r = path
        .check(ApiSurface::Registry)?
        .authorize(&state, READ)?
        .fetch(&state)
        .await?;
    Ok(Json(to_wire(&r, &state.config.login_server_suffix)))
}

/// The admin user's credentials (ACR `listCredentials`): the registry's name and two
/// passwords, accepted by the built-in registry under `--registry-auth`. 400
/// `UnAuthorizedForCredentialOperations` while `adminUserEnabled` is false, as in ACR.
#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}/listCredentials",
    operation_id = "Registries_ListCredentials", tag = "registries",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("api-version" = String, Query)),
    responses((status = 200, description = "The admin user and its passwords", body = RegistryListCredentialsResult),
              (status = "default", description = "Error", body = acr_core::wire::ErrorResponse)))]
pub async fn list_credentials(
    State(state): State<AppState>,
    path: RegistryPath,
) -> Result<Json<RegistryListCredentialsResult>, ApiError> {
    let target = path
        .check(ApiSurface::Registry)?
        .authorize(&state, LIST_CREDENTIALS)?;
    let r = target.fetch_live(&state).await?;
    let id = &target.id;
    if !r.props().admin_user_enabled {
        return Err(ApiError::bad_request(
            "UnAuthorizedForCredentialOperations",
            format!(
                "Cannot perform credential operations for {id} as admin user is disabled. \
                 Kindly enable admin user with adminUserEnabled: true (az acr update -n {} --admin-enabled true).",
                r.name
            ),
        ));
    }
    let key = state.config.admin_key.as_ref().ok_or_else(|| {
        ApiError::bad_request(
            "OperationNotSupported",
            "admin credentials are not available: this service has no admin key",
        )
    })?;
    let passwords = key
        .passwords(&r.name, &r.generation())
        .into_iter()
        .zip(acr_core::admin::PASSWORD_NAMES)
        .map(|(value, name)| RegistryPassword {
            name: name.to_string(),
            value,
        })
        .collect();
    Ok(Json(RegistryListCredentialsResult {
        username: acr_core::admin::AdminKey::username(&r.name),
        passwords,
    }))
}

/// Delete a registry: a long-running operation. The registry turns `Deleting` at once (it
/// serves nothing more, imports into it are cancelled, its name is not free), its content is
/// removed from the backend, then the resource goes (404). 202 with the operation's URLs;
/// 204 when it does not exist.
#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}",
    operation_id = "Registries_Delete", tag = "registries",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("api-version" = String, Query)),
    responses((status = 202, description = "Deleting; poll the Azure-AsyncOperation or Location URL",
               headers(("Location" = String, description = "Operation result URL"),
                       ("Azure-AsyncOperation" = String, description = "Operation status URL"),
                       ("Retry-After" = u32, description = "Seconds to wait before polling"))),
              (status = 204, description = "Did not exist"),
              (status = "default", description = "Error", body = acr_core::wire::ErrorResponse)),
    extensions(("x-ms-long-running-operation" = json!(true)),
               ("x-ms-long-running-operation-options" = json!({"final-state-via": "azure-async-operation"}))))]
pub async fn delete_registry(
    State(state): State<AppState>,
    path: RegistryPath,
    scheme: Option<Extension<crate::ListenerScheme>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let TargetRegistry {
        id, api_version, ..
    } = path
        .check(ApiSurface::Registry)?
        .authorize(&state, DELETE)?;
    let Some(started) = start_deletion(&state, &id, api_version).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    crate::urls::accepted(&state, scheme.as_deref(), &headers, &started)
}

/// Starts deleting registry `id` (or finds its running deletion); `None` when it does not
/// exist.
pub(crate) async fn start_deletion(
    state: &AppState,
    id: &RegistryId,
    api_version: &str,
) -> Result<Option<acr_store::OperationRecord>, ApiError> {
    let Some(existing) = state
        .store
        .get_registry(&id.subscription, &id.resource_group, &id.name)
        .await?
    else {
        return Ok(None);
    };
    let op = acr_store::NewOperation {
        id: format!("registries-{}", uuid::Uuid::new_v4().hyphenated()),
        subscription_id: existing.subscription_id.clone(),
        resource_group: existing.resource_group.clone(),
        registry_name: existing.name.clone(),
        location: existing.location.clone(),
        api_version: api_version.to_owned(),
        work: acr_store::Work::DeleteRegistry,
        credentials: None,
    };
    Ok(
        match state
            .store
            .begin_registry_deletion(&id.subscription, &id.resource_group, &id.name, &op)
            .await?
        {
            acr_store::DeletionStarted::NotFound => None,
            acr_store::DeletionStarted::Started(rec) => {
                tracing::info!(operation.id = %rec.id, registry = %existing.name, "registry deletion started");
                Some(rec)
            }
            acr_store::DeletionStarted::AlreadyDeleting(rec) => Some(rec),
        },
    )
}

/// Registries of a resource group.
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries",
    operation_id = "Registries_ListByResourceGroup", tag = "registries",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("api-version" = String, Query)),
    responses((status = 200, description = "The registries", body = RegistryListResult),
              (status = "default", description = "Error", body = acr_core::wire::ErrorResponse)))]
pub async fn list_by_group(
    State(state): State<AppState>,
    ArmPath((sub, rg)): ArmPath<(String, String)>,
    version: RawApiVersion,
    caller: Caller,
) -> Result<Json<RegistryListResult>, ApiError> {
    version.check(ApiSurface::Registry)?;
    let sub = ApiError::subscription(&sub)?;
    acr_core::arm::validate_resource_group(&rg)
        .map_err(|e| ApiError::invalid("InvalidResourceGroupName", e))?;
    let list = state.store.list_registries(&sub, Some(&rg)).await?;
    Ok(Json(RegistryListResult {
        value: visible(&state, &caller, &list),
    }))
}

/// Registries of a subscription.
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.ContainerRegistry/registries",
    operation_id = "Registries_List", tag = "registries",
    params(("subscriptionId" = String, Path), ("api-version" = String, Query)),
    responses((status = 200, description = "The registries", body = RegistryListResult),
              (status = "default", description = "Error", body = acr_core::wire::ErrorResponse)))]
pub async fn list_by_subscription(
    State(state): State<AppState>,
    ArmPath(sub): ArmPath<String>,
    version: RawApiVersion,
    caller: Caller,
) -> Result<Json<RegistryListResult>, ApiError> {
    version.check(ApiSurface::Registry)?;
    let sub = ApiError::subscription(&sub)?;
    let list = state.store.list_registries(&sub, None).await?;
    Ok(Json(RegistryListResult {
        value: visible(&state, &caller, &list),
    }))
}

/// Update a registry's tags, SKU or properties (fields left out keep their values).
#[utoipa::path(patch, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}",
    operation_id = "Registries_Update", tag = "registries",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("api-version" = String, Query)),
    request_body = RegistryUpdateParameters,
    responses((status = 200, description = "Updated", body = Registry),
              (status = "default", description = "Error", body = acr_core::wire::ErrorResponse)))]
pub async fn update_registry(
    State(state): State<AppState>,
    path: RegistryPath,
    ArmJson(body): ArmJson<RegistryUpdateParameters>,
) -> Result<Json<Registry>, ApiError> {
    let target = path.check(ApiSurface::Registry)?.authorize(&state, WRITE)?;
    // The emulator keeps no identity, but what is sent must still be one (an object).
    if body
        .identity
        .as_ref()
        .is_some_and(|v| !v.is_object() && !v.is_null())
    {
        return Err(ApiError::bad_request(
            "InvalidRequestContent",
            "'identity' must be an object.",
        )
        .with_target("identity"));
    }
    let existing = target.fetch_live(&state).await?;
    let TargetRegistry { id, caller, .. } = target;
    let sku = match &body.sku {
        Some(s) => parse_sku(&s.name)?,
        None => SkuName::parse(&existing.sku).unwrap_or(SkuName::Standard),
    };
    validate_tags(body.tags.as_ref())?;
    let mut props = props_from(body.properties.as_ref(), Some(existing.props()))?;
    check_policies_sku(sku, &props)?;
    let sku = sku.as_str().to_owned();
    stamp_modified(&mut props, &caller, false);
    let tags = body.tags.or_else(|| existing.tags().cloned());
    let record = RegistryRecord::new(&existing.id(), existing.location.clone(), sku, tags, props);
    match state.store.upsert_registry(&record).await? {
        Upserted::Updated | Upserted::Created => {}
        Upserted::Deleting => return Err(ApiError::registry_deleting(&id.name)),
        Upserted::NameTaken => return Err(ApiError::internal()),
    }
    let saved = state
        .store
        .get_registry(&id.subscription, &id.resource_group, &id.name)
        .await?
        .ok_or_else(ApiError::internal)?;
    Ok(Json(to_wire(&saved, &state.config.login_server_suffix)))
}

/// Whether a registry name can be used (names are unique across the emulator, as in Azure).
#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/providers/Microsoft.ContainerRegistry/checkNameAvailability",
    operation_id = "Registries_CheckNameAvailability", tag = "registries",
    params(("subscriptionId" = String, Path), ("api-version" = String, Query)),
    request_body = RegistryNameCheckRequest,
    responses((status = 200, description = "The answer", body = RegistryNameStatus),
              (status = "default", description = "Error", body = acr_core::wire::ErrorResponse)))]
pub async fn check_name_availability(
    State(state): State<AppState>,
    ArmPath(sub): ArmPath<String>,
    version: RawApiVersion,
    ArmJson(body): ArmJson<RegistryNameCheckRequest>,
) -> Result<Json<RegistryNameStatus>, ApiError> {
    version.check(ApiSurface::Registry)?;
    ApiError::subscription(&sub)?;
    if !body.type_.eq_ignore_ascii_case(REGISTRY_TYPE) {
        return Err(ApiError::bad_request(
            "InvalidResourceType",
            format!(
                "The resource type '{}' is not valid: expected '{REGISTRY_TYPE}'.",
                acr_core::reference::truncate(&body.type_)
            ),
        )
        .with_target("type"));
    }
    if let Err(e) = acr_core::arm::validate_registry_name(&body.name) {
        return Ok(Json(RegistryNameStatus {
            name_available: false,
            reason: Some("Invalid".into()),
            message: Some(e.message),
        }));
    }
    let taken = state
        .store
        .get_registry_by_name(&body.name)
        .await?
        .is_some();
    Ok(Json(if taken {
        RegistryNameStatus {
            name_available: false,
            reason: Some("AlreadyExists".into()),
            message: Some(format!(
                "The registry {} is already in use.",
                body.name.to_ascii_lowercase()
            )),
        }
    } else {
        RegistryNameStatus {
            name_available: true,
            reason: None,
            message: None,
        }
    }))
}
