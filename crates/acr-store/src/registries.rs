//! Emulated registry resources.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

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
}

impl Default for RegistryProps {
    fn default() -> Self {
        Self {
            admin_user_enabled: false,
            public_network_access: "Enabled".into(),
            network_rule_bypass_options: "AzureServices".into(),
            anonymous_pull_enabled: false,
        }
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
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Updated,
    /// The name belongs to a registry in another subscription or resource group.
    NameTaken,
}

const COLUMNS: &str = "name, name_lower, subscription_id, resource_group, location, sku, tags, properties, created_at";

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
