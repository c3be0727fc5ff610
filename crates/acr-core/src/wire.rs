//! ARM wire types (request and response bodies) with their OpenAPI schemas.
//!
//! Field names and required-ness follow the `Microsoft.ContainerRegistry` 2025-11-01 spec.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

// The schemas of the import body types must stay equal to the 2025-11-01 spec's (checked by
// `crates/acr-api/tests/contract_2025_11_01.rs`): optional fields are `nullable = false`
// because the spec types them as plain `string` / `array` / object (a JSON `null` is still
// accepted by serde, as "absent").

/// Body of `POST …/importImage`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportImageParameters {
    /// The source of the image.
    pub source: ImportSource,
    /// List of strings of the form `repo[:tag]`. When tag is omitted the source tag is used (or
    /// `latest` when the source has none).
    #[serde(default)]
    #[schema(nullable = false)]
    pub target_tags: Option<Vec<String>>,
    /// List of repositories to copy the manifest into, without a tag.
    #[serde(default)]
    #[schema(nullable = false)]
    pub untagged_target_repositories: Option<Vec<String>>,
    /// When `Force`, any existing target tags are overwritten. When `NoForce`, the import fails
    /// before copying anything if a target tag already exists.
    #[serde(default)]
    #[schema(nullable = false, default = "NoForce")]
    pub mode: Option<ImportMode>,
}

/// `ImportSource` of the ARM spec.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportSource {
    /// The resource identifier of the source Azure Container Registry.
    #[serde(default)]
    #[schema(nullable = false)]
    pub resource_id: Option<String>,
    /// The address of the source registry (e.g. `mcr.microsoft.com`).
    #[serde(default)]
    #[schema(nullable = false)]
    pub registry_uri: Option<String>,
    /// Credentials used when importing from a registry that requires them.
    #[serde(default)]
    #[schema(nullable = false)]
    pub credentials: Option<ImportSourceCredentials>,
    /// Repository name of the source image: `repo`, `repo:tag` or `repo@sha256:…`.
    pub source_image: String,
}

/// Source registry credentials. A password without a username is an access token.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportSourceCredentials {
    /// The username to authenticate with the source registry.
    #[serde(default)]
    #[schema(nullable = false)]
    pub username: Option<String>,
    /// The password (or access token) used to authenticate with the source registry.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

impl fmt::Debug for ImportSourceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportSourceCredentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// `ImportMode`: `NoForce` (default) or `Force`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, ToSchema)]
pub enum ImportMode {
    #[default]
    NoForce,
    Force,
}

impl<'de> Deserialize<'de> for ImportMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.eq_ignore_ascii_case("NoForce") {
            Ok(ImportMode::NoForce)
        } else if s.eq_ignore_ascii_case("Force") {
            Ok(ImportMode::Force)
        } else {
            Err(serde::de::Error::custom(format!(
                "the value '{}' is not valid for 'mode'; allowed values are 'NoForce' and 'Force'",
                crate::reference::truncate(&s)
            )))
        }
    }
}

/// SKU names of a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum SkuName {
    Classic,
    Basic,
    Standard,
    Premium,
}

impl SkuName {
    pub fn parse(s: &str) -> Option<Self> {
        [
            SkuName::Classic,
            SkuName::Basic,
            SkuName::Standard,
            SkuName::Premium,
        ]
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SkuName::Classic => "Classic",
            SkuName::Basic => "Basic",
            SkuName::Standard => "Standard",
            SkuName::Premium => "Premium",
        }
    }
}

/// The SKU of a registry; `tier` is read-only and equals `name`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Sku {
    pub name: SkuName,
    pub tier: SkuName,
}

/// Request body of `PUT …/registries/{name}` (fields we do not model are ignored, as ARM
/// ignores read-only properties sent back by clients).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCreateParameters {
    /// The Azure region of the registry (e.g. `eastus`).
    pub location: String,
    pub sku: SkuInput,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<serde_json::Value>,
}

/// `sku` in a request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SkuInput {
    /// `Classic`, `Basic`, `Standard` or `Premium`.
    pub name: String,
}

/// The registry resource as ARM returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Registry {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    pub sku: Sku,
    pub properties: RegistryProperties,
    pub system_data: SystemData,
}

/// `properties` of a registry.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryProperties {
    pub login_server: String,
    pub creation_date: DateTime<Utc>,
    /// Always `Succeeded`: creation and updates are synchronous in the emulator.
    pub provisioning_state: String,
    pub admin_user_enabled: bool,
    pub network_rule_set: NetworkRuleSet,
    /// `Enabled` or `Disabled`.
    pub public_network_access: String,
    /// `AzureServices` or `None`.
    pub network_rule_bypass_options: String,
    pub anonymous_pull_enabled: bool,
    pub data_endpoint_enabled: bool,
    pub data_endpoint_host_names: Vec<String>,
    /// `LegacyRegistryPermissions` or `AbacRepositoryPermissions`: which roles give data access.
    pub role_assignment_mode: String,
    /// `Enabled` or `Disabled`.
    pub zone_redundancy: String,
    pub policies: crate::policies::Policies,
    #[schema(value_type = Object)]
    pub encryption: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    pub private_endpoint_connections: Vec<serde_json::Value>,
}

/// The firewall of a registry: `defaultAction` applies to addresses no `ipRules` entry matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRuleSet {
    /// `Allow` or `Deny`.
    pub default_action: String,
    #[serde(default)]
    pub ip_rules: Vec<IpRule>,
}

impl Default for NetworkRuleSet {
    fn default() -> Self {
        Self {
            default_action: "Allow".into(),
            ip_rules: Vec::new(),
        }
    }
}

/// One IP rule: `action` is always `Allow`, `value` an address or CIDR range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpRule {
    #[serde(default = "allow")]
    pub action: String,
    pub value: String,
}

fn allow() -> String {
    "Allow".into()
}

/// ARM's `systemData`: who created and last modified a resource, and when.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemData {
    pub created_by: String,
    /// `User`, `Application`, `ManagedIdentity` or `Key`.
    pub created_by_type: String,
    pub created_at: DateTime<Utc>,
    pub last_modified_by: String,
    pub last_modified_by_type: String,
    pub last_modified_at: DateTime<Utc>,
}

/// Body of `PATCH …/registries/{name}`: every field optional; `tags` replaces the whole set.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryUpdateParameters {
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub sku: Option<SkuInput>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub identity: Option<serde_json::Value>,
}

/// Body of `POST …/checkNameAvailability`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryNameCheckRequest {
    pub name: String,
    /// Must be `Microsoft.ContainerRegistry/registries`.
    #[serde(rename = "type")]
    pub type_: String,
}

/// Answer of `checkNameAvailability`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryNameStatus {
    pub name_available: bool,
    /// `Invalid` or `AlreadyExists` when the name is not available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Answer of `listCredentials`: the admin user and its two passwords.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegistryListCredentialsResult {
    /// The admin user name (the registry's name).
    pub username: String,
    pub passwords: Vec<RegistryPassword>,
}

/// One admin password (`password` or `password2`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegistryPassword {
    pub name: String,
    pub value: String,
}

/// `{"value":[…]}` of a registry list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegistryListResult {
    pub value: Vec<Registry>,
}

/// Progress of an import, an extension we report in the operation status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportProgress {
    pub manifests_total: u64,
    pub manifests_done: u64,
    pub blobs_total: u64,
    pub blobs_done: u64,
    pub bytes_total: u64,
    /// Bytes transferred from the source to the target.
    pub bytes_copied: u64,
    /// Bytes not transferred because the target already had them.
    pub bytes_skipped: u64,
    /// The digest the source reference resolved to when the import started: what is copied
    /// and tagged, even if the source tag moves meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<String>,
}

/// What `GET` on the Azure-AsyncOperation URL returns.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    /// The URL path of this status resource.
    pub id: String,
    /// The operation id, `registries-<guid>`.
    pub name: String,
    /// `InProgress`, `Succeeded`, `Failed` or `Canceled`.
    pub status: String,
    pub start_time: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    pub percent_complete: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    /// acr-import extension: copy progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<ImportProgress>,
}

/// The ARM error envelope.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

/// An ARM error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// PascalCase error code.
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(no_recursion)]
    pub details: Option<Vec<ErrorDetail>>,
}
