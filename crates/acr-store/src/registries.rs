//! Emulated registry resources.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

pub use acr_core::wire::{IpRule, NetworkRuleSet};

use crate::{Store, StoreError};

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
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Updated,
    /// The name belongs to a registry in another subscription or resource group.
    NameTaken,
}

const COLUMNS: &str = "name, name_lower, subscription_id, resource_group, location, sku, tags, properties, created_at, updated_at";

impl Store {
    /// Creates the registry or updates it in place (same subscription and resource group).
    pub async fn upsert_registry(&self, r: &RegistryRecord) -> Result<Upserted, StoreError> {
        let row: Option<(bool,)> = sqlx::query_as(
            "insert into registries (name, name_lower, subscription_id, resource_group, location, sku, tags, properties)
             values ($1, $2, $3, $4, $5, $6, $7, $8)
             on conflict (name_lower) do update
               set location = excluded.location, sku = excluded.sku, tags = excluded.tags,
                   properties = excluded.properties, updated_at = now()
               where registries.subscription_id = excluded.subscription_id
                 and lower(registries.resource_group) = lower(excluded.resource_group)
             returning (xmax = 0)",
        )
        .bind(&r.name)
        .bind(&r.name_lower)
        .bind(&r.subscription_id)
        .bind(&r.resource_group)
        .bind(&r.location)
        .bind(&r.sku)
        .bind(&r.tags)
        .bind(&r.properties)
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            Some((true,)) => Upserted::Created,
            Some((false,)) => Upserted::Updated,
            None => Upserted::NameTaken,
        })
    }

    /// The registry at this ARM address (names and resource groups compare case-insensitively).
    pub async fn get_registry(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Result<Option<RegistryRecord>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "select {COLUMNS} from registries
             where name_lower = lower($3) and subscription_id = $1 and lower(resource_group) = lower($2)"
        ))
        .bind(subscription)
        .bind(resource_group)
        .bind(name)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The registry with this name wherever it lives (names are globally unique).
    pub async fn get_registry_by_name(
        &self,
        name: &str,
    ) -> Result<Option<RegistryRecord>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "select {COLUMNS} from registries where name_lower = lower($1)"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Deletes; returns whether it existed.
    pub async fn delete_registry(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "delete from registries
             where name_lower = lower($3) and subscription_id = $1 and lower(resource_group) = lower($2)",
        )
        .bind(subscription)
        .bind(resource_group)
        .bind(name)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Registries of a subscription, optionally of one resource group, by name.
    pub async fn list_registries(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
    ) -> Result<Vec<RegistryRecord>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "select {COLUMNS} from registries
             where subscription_id = $1 and ($2::text is null or lower(resource_group) = lower($2))
             order by name_lower"
        ))
        .bind(subscription)
        .bind(resource_group)
        .fetch_all(self.pool())
        .await?)
    }
}

impl Store {
    /// Subscriptions that hold at least one registry, sorted.
    pub async fn registry_subscriptions(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("select distinct subscription_id from registries order by 1")
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(|(s,)| s).collect())
    }

    /// Resource groups of a subscription that hold registries, with the region of one of them.
    pub async fn resource_group(
        &self,
        subscription: &str,
        resource_group: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "select resource_group, location from registries
             where subscription_id = $1 and lower(resource_group) = lower($2)
             order by created_at limit 1",
        )
        .bind(subscription)
        .bind(resource_group)
        .fetch_optional(self.pool())
        .await?)
    }
}
