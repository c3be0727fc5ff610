//! [`RegistryPath`]: the path of one registry (`…/registries/{registryName}` and the actions
//! under it) with the request's api-version and caller, and the preamble every handler of a
//! registry runs on it, written once: api-version → registry id → authorization → the stored
//! registry (404 `ResourceNotFound`) → not being deleted (409 `RegistryBeingDeleted`).
//!
//! Extraction only collects (a path that does not decode is its one rejection); the checks run
//! when the handler calls them, after its body was extracted, so a malformed body is answered
//! before a bad api-version or a missing registry, as it always was. Each step is a call, in
//! the order the handler needs: `importImage` validates its body between the id and the lookup
//! and authorizes after the import rules.

use acr_core::arm::{ApiSurface, RegistryId, REGISTRY_TYPE};
use acr_store::RegistryRecord;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::caller::{authorize, Caller};
use crate::error::ApiError;
use crate::extract::{ArmPath, RawApiVersion};
use crate::AppState;

/// `{subscriptionId}`, `{resourceGroupName}`, `{registryName}` as sent, the api-version and
/// the caller.
#[derive(Debug)]
pub struct RegistryPath {
    subscription: String,
    resource_group: String,
    name: String,
    version: RawApiVersion,
    caller: Caller,
}

impl<S: Send + Sync> FromRequestParts<S> for RegistryPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ArmPath((subscription, resource_group, name)) =
            ArmPath::<(String, String, String)>::from_request_parts(parts, state).await?;
        let version = RawApiVersion::from_request_parts(parts, state).await?;
        let Ok(caller) = Caller::from_request_parts(parts, state).await;
        Ok(Self {
            subscription,
            resource_group,
            name,
            version,
            caller,
        })
    }
}

impl RegistryPath {
    /// The api-version (one of `surface`'s), then the registry's id from the path.
    pub fn check(self, surface: ApiSurface) -> Result<TargetRegistry, ApiError> {
        let api_version = self.version.check(surface)?;
        let id = registry_id(&self.subscription, &self.resource_group, &self.name)?;
        Ok(TargetRegistry {
            id,
            api_version,
            caller: self.caller,
        })
    }
}

/// A registry named by a valid path in a supported api-version: who asks, and for what.
#[derive(Debug)]
pub struct TargetRegistry {
    pub id: RegistryId,
    /// The request's api-version, as the service spells it.
    pub api_version: &'static str,
    pub caller: Caller,
}

impl TargetRegistry {
    /// The caller may do `action` on the registry (`AuthorizationFailed` otherwise).
    pub fn authorize(self, state: &AppState, action: &str) -> Result<Self, ApiError> {
        authorize(state, &self.caller, action, &self.id.to_string())?;
        Ok(self)
    }

    /// The stored registry, or 404 `ResourceNotFound`.
    pub async fn fetch(&self, state: &AppState) -> Result<RegistryRecord, ApiError> {
        let id = &self.id;
        state
            .store
            .get_registry(&id.subscription, &id.resource_group, &id.name)
            .await?
            .ok_or_else(|| {
                ApiError::resource_not_found(REGISTRY_TYPE, &id.name, &id.resource_group)
            })
    }

    /// [`fetch`](Self::fetch), and 409 `RegistryBeingDeleted` while its deletion runs.
    pub async fn fetch_live(&self, state: &AppState) -> Result<RegistryRecord, ApiError> {
        let r = self.fetch(state).await?;
        if r.deleting() {
            return Err(ApiError::registry_deleting(&r.name));
        }
        Ok(r)
    }
}

/// Validates the three path parameters of a registry.
fn registry_id(sub: &str, rg: &str, name: &str) -> Result<RegistryId, ApiError> {
    RegistryId::new(sub, rg, name).map_err(|e| {
        let code = match e.target.as_str() {
            "subscriptionId" => "InvalidSubscriptionId",
            "resourceGroupName" => "InvalidResourceGroupName",
            _ => "InvalidResourceName",
        };
        ApiError::invalid(code, e)
    })
}
