//! Who may do what on a login server: credentials → a [`Principal`], and a principal's
//! actions on a registry's repositories.
//!
//! Credentials, as ACR takes them:
//! - an admin user (user = registry name, a `listCredentials` password), while
//!   `adminUserEnabled` is true;
//! - the user `00000000-0000-0000-0000-000000000000` with a refresh token of ours (what
//!   `az acr login` gives docker), or a refresh token in a `refresh_token` grant;
//! - an Entra access token (the exchange's `access_token`, or a password without a username:
//!   cross-tenant import);
//! - nothing: anonymous, which may pull where `anonymousPullEnabled` is true.
//!
//! An Entra principal's rights: with `--auth none` everything; with `--auth arm-rbac` its
//! role assignments on the registry decide, as ACR does per `roleAssignmentMode`: legacy
//! registries by the actions `registries/pull/read`, `push/write`, `artifacts/delete` (AcrPull,
//! AcrPush, AcrDelete, Owner, Contributor, and Reader, which pulls); ABAC registries by the
//! repository roles' data actions (`repositories/content/read`, `…/write`, `…/delete`,
//! `repositories/metadata/read|write|delete`, `catalog/read`), where AcrPull/AcrPush/AcrDelete
//! and Owner/Contributor alone give no data access. ABAC conditions (per-repository scoping)
//! are not modelled: an assignment covers every repository of the registry.

use std::sync::Arc;

use acr_core::admin::AdminKey;
use acr_core::rbac::RbacConfig;
use acr_store::{RegistryRecord, Store};

use crate::tokens::{Principal, TokenKeys};

/// The user name `az acr login` gives docker with a refresh token as password.
pub const TOKEN_USER: &str = "00000000-0000-0000-0000-000000000000";

/// An action of a `repository:<name>:<actions>` scope, or the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Pull,
    Push,
    Delete,
    MetadataRead,
    MetadataWrite,
    /// `registry:catalog:*`.
    Catalog,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::MetadataRead => "metadata_read",
            Action::MetadataWrite => "metadata_write",
            Action::Catalog => "*",
        }
    }

    /// The repository actions of a scope's action list (`*`: all of them; unknown ones are
    /// dropped, as registries do).
    pub fn parse_list(s: &str) -> Vec<Action> {
        let mut out = Vec::new();
        for a in s.split(',').map(str::trim) {
            let add: &[Action] = match a {
                "pull" => &[Action::Pull],
                "push" => &[Action::Push],
                "delete" => &[Action::Delete],
                "metadata_read" => &[Action::MetadataRead],
                "metadata_write" => &[Action::MetadataWrite],
                "*" => &[
                    Action::Pull,
                    Action::Push,
                    Action::Delete,
                    Action::MetadataRead,
                    Action::MetadataWrite,
                ],
                _ => &[],
            };
            for x in add {
                if !out.contains(x) {
                    out.push(*x);
                }
            }
        }
        out
    }

    fn legacy_action(self) -> &'static str {
        match self {
            Action::Pull | Action::MetadataRead | Action::Catalog => {
                "Microsoft.ContainerRegistry/registries/pull/read"
            }
            Action::Push | Action::MetadataWrite => {
                "Microsoft.ContainerRegistry/registries/push/write"
            }
            Action::Delete => "Microsoft.ContainerRegistry/registries/artifacts/delete",
        }
    }

    fn abac_data_actions(self) -> &'static [&'static str] {
        match self {
            Action::Pull => &["Microsoft.ContainerRegistry/registries/repositories/content/read"],
            Action::MetadataRead => {
                &["Microsoft.ContainerRegistry/registries/repositories/metadata/read"]
            }
            Action::Push => &["Microsoft.ContainerRegistry/registries/repositories/content/write"],
            Action::MetadataWrite => {
                &["Microsoft.ContainerRegistry/registries/repositories/metadata/write"]
            }
            Action::Delete => &[
                "Microsoft.ContainerRegistry/registries/repositories/content/delete",
                "Microsoft.ContainerRegistry/registries/repositories/metadata/delete",
            ],
            Action::Catalog => &["Microsoft.ContainerRegistry/registries/catalog/read"],
        }
    }
}

/// How Entra principals are judged (`--auth`).
#[derive(Debug, Clone, Default)]
pub enum EntraPolicy {
    /// Any Entra-shaped token gets everything.
    #[default]
    Open,
    /// Role assignments decide; with `verify_key`, only tokens signed with it count.
    Rbac {
        rbac: Arc<RbacConfig>,
        verify_key: Option<Arc<Vec<u8>>>,
    },
}

/// Decides credentials and rights.
#[derive(Clone)]
pub struct Authority {
    store: Store,
    admin_key: AdminKey,
    entra: EntraPolicy,
    pub tokens: TokenKeys,
    tenant: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    pub fn new(
        store: Store,
        admin_key: AdminKey,
        entra: EntraPolicy,
        tokens: TokenKeys,
        tenant: String,
    ) -> Self {
        Self {
            store,
            admin_key,
            entra,
            tokens,
            tenant,
        }
    }

    /// The principal of an Entra access token, if the policy accepts it.
    pub fn entra_principal(&self, token: &str) -> Option<Principal> {
        let claims = crate::tokens::peek_claims(token)?;
        let oid = claims.get("oid").and_then(|v| v.as_str())?.to_owned();
        let tid = claims
            .get("tid")
            .and_then(|v| v.as_str())
            .unwrap_or(&self.tenant)
            .to_owned();
        if oid.trim().is_empty() {
            return None;
        }
        if let EntraPolicy::Rbac {
            verify_key: Some(key),
            ..
        } = &self.entra
        {
            let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
            v.validate_aud = false;
            v.set_required_spec_claims(&["exp"]);
            jsonwebtoken::decode::<serde_json::Value>(
                token,
                &jsonwebtoken::DecodingKey::from_secret(key),
                &v,
            )
            .ok()?;
        } else if claims
            .get("exp")
            .and_then(|e| e.as_i64())
            .is_some_and(|exp| exp < chrono::Utc::now().timestamp())
        {
            return None;
        }
        Some(Principal::Entra { oid, tid })
    }

    /// The principal of a user name and password: an admin user, the token user with a
    /// refresh token of ours, or (no user name, or any other) an Entra access token.
    pub async fn password_principal(
        &self,
        username: Option<&str>,
        password: &str,
        service: Option<&str>,
    ) -> Option<Principal> {
        match username.filter(|u| !u.is_empty()) {
            Some(TOKEN_USER) => self
                .tokens
                .verify_refresh(password, service)
                .or_else(|| self.entra_principal(password)),
            Some(user) => {
                if let Some(p) = self.admin_principal(user, password).await {
                    return Some(p);
                }
                // A refresh token or an Entra token as password works with any user name.
                self.tokens
                    .verify_refresh(password, service)
                    .or_else(|| self.entra_principal(password))
            }
            None => self
                .tokens
                .verify_refresh(password, service)
                .or_else(|| self.entra_principal(password)),
        }
    }

    async fn admin_principal(&self, user: &str, password: &str) -> Option<Principal> {
        let r = self.store.get_registry_by_name(user).await.ok()??;
        let ok = !r.deleting()
            && r.properties.0.admin_user_enabled
            && self
                .admin_key
                .verify(&r.name, &r.generation(), user, password);
        ok.then(|| Principal::Admin {
            registry: r.name_lower.clone(),
            generation: r.generation(),
        })
    }

    /// Whether `principal` may do `action` in `registry` (on any repository of it: ABAC
    /// conditions are not modelled).
    pub fn may(&self, principal: &Principal, registry: &RegistryRecord, action: Action) -> bool {
        if registry.deleting() {
            return false;
        }
        let props = &registry.properties.0;
        match principal {
            Principal::Admin {
                registry: r,
                generation,
            } => {
                *r == registry.name_lower
                    && *generation == registry.generation()
                    && props.admin_user_enabled
            }
            Principal::Anonymous => props.anonymous_pull_enabled && action == Action::Pull,
            Principal::Entra { oid, .. } => match &self.entra {
                EntraPolicy::Open => true,
                EntraPolicy::Rbac { rbac, .. } => {
                    let scope = registry.id().to_string();
                    if props.abac() {
                        action
                            .abac_data_actions()
                            .iter()
                            .all(|a| rbac.is_data_allowed(oid, a, &scope))
                    } else {
                        rbac.is_allowed(oid, action.legacy_action(), &scope)
                    }
                }
            },
        }
    }

    /// Whether every Entra principal may do everything (`--auth none`).
    pub fn entra_is_open(&self) -> bool {
        matches!(self.entra, EntraPolicy::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::Action;

    #[test]
    fn scope_actions() {
        assert_eq!(
            Action::parse_list("pull,push"),
            vec![Action::Pull, Action::Push]
        );
        assert_eq!(
            Action::parse_list("metadata_read,bogus,pull"),
            vec![Action::MetadataRead, Action::Pull]
        );
        assert_eq!(Action::parse_list("*").len(), 5);
    }
}
