//! Emulated registry resources: their types and the store's methods (SQL in `pg` and `sqlite`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

pub use acr_core::policies::{Policies, RetentionPolicy};
pub use acr_core::wire::{IpRule, NetworkRuleSet};

use crate::{Backend, Store, StoreError};

/// User-settable registry properties we keep (stored as jsonb so later issues can add fields
/// without a migration per flag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegistryProps {
    pub admin_user_enabled: bool,
    pub public_network_access: String,
    pub network_rule_bypass_options: String,
    pub anonymous_pull_enabled: bool,
    pub network_rule_set: NetworkRuleSet,
    pub zone_redundancy: String,
    pub data_endpoint_enabled: bool,
    /// `LegacyRegistryPermissions` (AcrPull, AcrPush, … and Owner/Contributor/Reader decide
    /// data access) or `AbacRepositoryPermissions` (the repository roles' data actions do).
    pub role_assignment_mode: String,
    /// `policies` (the retention policy is enforced by the retention sweep; the others are
    /// kept as set). Rows written before it existed read as ACR's defaults.
    pub policies: Policies,
    /// `systemData`: the principal (token `oid`, or `acr-import` without a token) and its kind.
    pub created_by: String,
    pub created_by_type: String,
    pub last_modified_by: String,
    pub last_modified_by_type: String,
}

impl Default for RegistryProps {
    fn default() -> Self {
        Self {
            admin_user_enabled: false,
            public_network_access: "Enabled".into(),
            network_rule_bypass_options: "AzureServices".into(),
            anonymous_pull_enabled: false,
            network_rule_set: NetworkRuleSet::default(),
            zone_redundancy: "Disabled".into(),
            data_endpoint_enabled: false,
            role_assignment_mode: "LegacyRegistryPermissions".into(),
            policies: Policies::default(),
            created_by: String::new(),
            created_by_type: String::new(),
            last_modified_by: String::new(),
            last_modified_by_type: String::new(),
        }
    }
}

impl RegistryProps {
    /// Whether the registry's network is restricted (public access off, or a firewall that
    /// denies by default): such a registry takes part in an import only through the trusted
    /// services bypass.
    pub fn network_restricted(&self) -> bool {
        self.public_network_access == "Disabled"
            || self
                .network_rule_set
                .default_action
                .eq_ignore_ascii_case("Deny")
    }

    pub fn public_access_disabled(&self) -> bool {
        self.public_network_access == "Disabled"
    }

    pub fn bypasses_for_azure_services(&self) -> bool {
        self.network_rule_bypass_options == "AzureServices"
    }

    /// Whether data access follows the repository roles (ABAC) rather than the legacy roles.
    pub fn abac(&self) -> bool {
        self.role_assignment_mode
            .eq_ignore_ascii_case("AbacRepositoryPermissions")
    }
}

/// A stored registry.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RegistryRecord {
    pub name: String,
    pub name_lower: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub location: String,
    pub sku: String,
    pub tags: Option<Json<BTreeMap<String, String>>>,
    pub properties: Json<RegistryProps>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set while the registry is being deleted (provisioning state `Deleting`): it serves
    /// nothing and its name is not free until its content is gone.
    pub deleting_since: Option<DateTime<Utc>>,
    /// The operation deleting it.
    pub deletion_operation_id: Option<String>,
}

impl RegistryRecord {
    /// A registry to write with [`Store::upsert_registry`], which creates it or updates an
    /// existing one's location, SKU, tags and properties (keeping its creation instant).
    pub fn new(
        id: &acr_core::arm::RegistryId,
        location: String,
        sku: String,
        tags: Option<BTreeMap<String, String>>,
        properties: RegistryProps,
    ) -> Self {
        let now = Utc::now();
        Self {
            name: id.name.clone(),
            name_lower: id.name_lower(),
            subscription_id: id.subscription.clone(),
            resource_group: id.resource_group.clone(),
            location,
            sku,
            tags: tags.map(Json),
            properties: Json(properties),
            created_at: now,
            updated_at: now,
            deleting_since: None,
            deletion_operation_id: None,
        }
    }

    /// The user-settable properties.
    pub fn props(&self) -> &RegistryProps {
        &self.properties.0
    }

    /// The resource tags, if any were set.
    pub fn tags(&self) -> Option<&BTreeMap<String, String>> {
        self.tags.as_ref().map(|t| &t.0)
    }

    /// Whether the registry is being deleted.
    pub fn deleting(&self) -> bool {
        self.deleting_since.is_some()
    }

    /// What tells this registry apart from others that had or will have its name: the instant
    /// it was created (kept by updates), to the microsecond.
    pub fn generation(&self) -> String {
        self.created_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }

    /// The registry's ARM resource id.
    pub fn id(&self) -> acr_core::arm::RegistryId {
        acr_core::arm::RegistryId {
            subscription: self.subscription_id.clone(),
            resource_group: self.resource_group.clone(),
            name: self.name.clone(),
        }
    }
}

/// What an import's source names, as far as the store can tell (the one resolution the API,
/// when it accepts an import, and the worker, when it runs it, both use).
#[derive(Debug, Clone)]
pub enum ResolvedSource {
    /// An emulated registry: by `resourceId` (`by_resource_id`) or by its login server.
    Emulated {
        record: Box<RegistryRecord>,
        by_resource_id: bool,
    },
    /// A `resourceId` that names no registry (or one being deleted).
    Missing(acr_core::arm::RegistryId),
    /// The login server of a registry being deleted.
    Deleted(acr_core::import::RegistryAddress),
    /// An address that is no emulated registry's login server: an external registry.
    External(acr_core::import::RegistryAddress),
}

impl Store {
    /// Resolves an import's source: a `resourceId`, or a `registryUri` that may be the login
    /// server (`<name>.<suffix>`, `suffix` normalised) of an emulated registry.
    pub async fn resolve_source(
        &self,
        source: &acr_core::import::SourceLocation,
        suffix: &str,
    ) -> Result<ResolvedSource, StoreError> {
        use acr_core::import::SourceLocation;
        Ok(match source {
            SourceLocation::Registry(id) => {
                match self
                    .get_registry(&id.subscription, &id.resource_group, &id.name)
                    .await?
                {
                    Some(r) if !r.deleting() => ResolvedSource::Emulated {
                        record: Box::new(r),
                        by_resource_id: true,
                    },
                    _ => ResolvedSource::Missing(id.clone()),
                }
            }
            SourceLocation::Address(addr) => match addr.emulated_name(suffix) {
                None => ResolvedSource::External(addr.clone()),
                Some(name) => match self.get_registry_by_name(name).await? {
                    None => ResolvedSource::External(addr.clone()),
                    Some(r) if r.deleting() => ResolvedSource::Deleted(addr.clone()),
                    Some(r) => ResolvedSource::Emulated {
                        record: Box::new(r),
                        by_resource_id: false,
                    },
                },
            },
        })
    }
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Updated,
    /// The name belongs to a registry in another subscription or resource group.
    NameTaken,
    /// The registry is being deleted: it cannot be updated, and its name is not free yet.
    Deleting,
}

/// The columns of [`RegistryRecord`], in the order both backends select them.
pub(crate) const COLUMNS: &str = "name, name_lower, subscription_id, resource_group, location, sku, tags, properties, created_at, updated_at, deleting_since, deletion_operation_id";

impl Store {
    /// Creates the registry or updates it in place (same subscription and resource group).
    pub async fn upsert_registry(&self, r: &RegistryRecord) -> Result<Upserted, StoreError> {
        match self.backend() {
            Backend::Postgres(pool) => crate::pg::upsert_registry(pool, r).await,
            Backend::Sqlite(db) => db.upsert_registry(r).await,
        }
    }

    /// The registry at this ARM address (names and resource groups compare case-insensitively).
    pub async fn get_registry(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Result<Option<RegistryRecord>, StoreError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                crate::pg::get_registry(pool, subscription, resource_group, name).await
            }
            Backend::Sqlite(db) => db.get_registry(subscription, resource_group, name).await,
        }
    }

    /// The registry with this name wherever it lives (names are globally unique).
    pub async fn get_registry_by_name(
        &self,
        name: &str,
    ) -> Result<Option<RegistryRecord>, StoreError> {
        match self.backend() {
            Backend::Postgres(pool) => crate::pg::get_registry_by_name(pool, name).await,
            Backend::Sqlite(db) => db.get_registry_by_name(name).await,
        }
    }

    /// Deletes; returns whether it existed.
    pub async fn delete_registry(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                crate::pg::delete_registry(pool, subscription, resource_group, name).await
            }
            Backend::Sqlite(db) => db.delete_registry(subscription, resource_group, name).await,
        }
    }

    /// Registries of a subscription, optionally of one resource group, by name.
    pub async fn list_registries(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
    ) -> Result<Vec<RegistryRecord>, StoreError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                crate::pg::list_registries(pool, subscription, resource_group).await
            }
            Backend::Sqlite(db) => db.list_registries(subscription, resource_group).await,
        }
    }

    /// Subscriptions that hold at least one registry, sorted.
    pub async fn registry_subscriptions(&self) -> Result<Vec<String>, StoreError> {
        match self.backend() {
            Backend::Postgres(pool) => crate::pg::registry_subscriptions(pool).await,
            Backend::Sqlite(db) => db.registry_subscriptions().await,
        }
    }

    /// Resource groups of a subscription that hold registries, with the region of one of them.
    pub async fn resource_group(
        &self,
        subscription: &str,
        resource_group: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                crate::pg::resource_group(pool, subscription, resource_group).await
            }
            Backend::Sqlite(db) => db.resource_group(subscription, resource_group).await,
        }
    }
}
