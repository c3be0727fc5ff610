//! Azure RBAC evaluation for the opt-in mode `--auth arm-rbac`.
//!
//! Pure logic, no I/O: the caller reads the configuration file, takes the bearer token from the
//! request and maps a [`Denial`] or a [`TokenError`] to an ARM error response.
//!
//! # Model
//!
//! An [`RbacConfig`] holds role assignments (principal object id, role, scope) and custom role
//! definitions; the built-in roles ([`BUILT_IN_ROLES`]) are always known. A principal may perform
//! an action on a resource when at least one of its assignments
//!
//! 1. has a scope equal to the resource id or an ancestor of it (whole path segments compared
//!    case-insensitively; `/` is the ancestor of everything), and
//! 2. names a role one of whose permission blocks lists an `actions` pattern matching the action
//!    and no `notActions` pattern matching it.
//!
//! Patterns match as in Azure: case-insensitively, with `*` standing for any run of characters,
//! `/` included (`*`, `*/read`, `Microsoft.ContainerRegistry/*`,
//! `Microsoft.ContainerRegistry/registries/*/action`). `notActions` subtract from the `actions` of
//! the same permission block only; they are not deny rules (another assignment can still grant the
//! action), exactly as in Azure. Deny assignments, conditions (ABAC) and data actions are not
//! modelled.
//!
//! # Configuration file
//!
//! ```json
//! {
//!   "roleAssignments": [
//!     {"principalId": "<object id>", "roleDefinitionName": "AcrPush",
//!      "scope": "/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.ContainerRegistry/registries/<name>"},
//!     {"principalId": "<object id>", "roleDefinitionId": "b24988ac-6180-42a0-ab88-20f7382dd24c",
//!      "scope": "/subscriptions/<sub>"}
//!   ],
//!   "roleDefinitions": [
//!     {"roleName": "Importer",
//!      "actions": ["Microsoft.ContainerRegistry/registries/importImage/action",
//!                  "Microsoft.ContainerRegistry/registries/read"],
//!      "notActions": []}
//!   ]
//! }
//! ```
//!
//! `roleDefinitionId` may be a bare GUID or a full id ending in
//! `/providers/Microsoft.Authorization/roleDefinitions/<guid>`, so the output of
//! `az role assignment list` can be pasted (unknown fields are ignored). A custom role may carry
//! an `id` (same forms) and may give its permissions either flat (`actions`/`notActions`) or as
//! Azure's `permissions: [{actions, notActions}]` array. Validation errors name the entry
//! (`roleAssignments[2].scope: …`).
//!
//! # Denial messages
//!
//! The texts are ARM's own, as reported by users of the real service:
//!
//! * `AuthorizationFailed` (403): "The client '{client}' with object id '{oid}' does not have
//!   authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If
//!   access was recently granted, please refresh your credentials." — e.g. Azure/ARO-RP#66 (2020),
//!   kubernetes-sigs/cloud-provider-azure#1999 (2022), microsoft/foundry-dev-tools#555.
//! * `LinkedAuthorizationFailed` (403): "The client '{client}' with object id '{oid}' has
//!   permission to perform action '{action}' on scope '{scope}'; however, it does not have
//!   permission to perform action(s) '{linked_action}' on the linked scope(s) '{linked_scope}'
//!   (respectively) or the linked scope(s) are invalid." — the current form, seen in many public
//!   logs (e.g. a `LinkedAuthorizationFailed` for `Microsoft.Network/virtualNetworks/peer/action`
//!   in a terraform test transcript, AKS `diskEncryptionSets/read` and
//!   `subnets/join/action` reports). Older forms: "…perform action '{a}' on the linked scope(s)
//!   '{s}' or the linked scope(s) are invalid." (Azure/aad-pod-identity#613, 2020) and, for
//!   importImage in 2019, "…perform action 'read' on the linked scope(s) '{s}'."
//!   (MicrosoftDocs/azure-docs#33442).
//!
//! The `{client}` ARM prints is the caller's user principal name for a user and the object id
//! again for a service principal or managed identity (never the application id: see
//! Azure/azure-sdk-for-net#1157 and #5026, where users were surprised that "the client" was the
//! object id); [`Claims::client`] implements that rule.
//!
//! # Sources for the built-in roles
//!
//! MicrosoftDocs/azure-docs `articles/role-based-access-control/built-in-roles/containers.md`
//! (2025-06) and `…/privileged.md` (Owner, Contributor, Reader); the Contributor `notActions` as of
//! the 2024-11-21 revision of the role.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Import an image into a registry (checked on the target registry).
pub const IMPORT_ACTION: &str = "Microsoft.ContainerRegistry/registries/importImage/action";
/// Read a registry resource (checked on a `source.resourceId` of an import, the linked scope).
pub const REGISTRY_READ: &str = "Microsoft.ContainerRegistry/registries/read";
/// Create or update a registry resource.
pub const REGISTRY_WRITE: &str = "Microsoft.ContainerRegistry/registries/write";
/// Delete a registry resource.
pub const REGISTRY_DELETE: &str = "Microsoft.ContainerRegistry/registries/delete";

/// ARM error code of a denied action.
pub const AUTHORIZATION_FAILED: &str = "AuthorizationFailed";
/// ARM error code of an allowed action whose linked resource is denied.
pub const LINKED_AUTHORIZATION_FAILED: &str = "LinkedAuthorizationFailed";

// ---------------------------------------------------------------------------------------------
// Built-in roles
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Actions and patterns
// ---------------------------------------------------------------------------------------------

/// Whether `action` matches the Azure action pattern `pattern`: case-insensitive, `*` stands for
/// any run of characters (including `/` and the empty run).
pub fn action_matches(pattern: &str, action: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = action.to_lowercase().chars().collect();
    glob(&p, &t)
}

/// Linear-time wildcard match with backtracking to the last `*`.
fn glob(p: &[char], t: &[char]) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// An action pattern is non-empty and made of `[A-Za-z0-9._-/*]`.
fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("an action pattern is empty".into());
    }
    if let Some(c) = pattern
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '*')))
    {
        return Err(format!(
            "action pattern '{pattern}' contains the character {c:?}; only letters, digits, '.', '_', '-', '/' and '*' are allowed"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------------------------

/// One `permissions` block of a role: `actions` minus `notActions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub not_data_actions: Vec<String>,
}

impl Permission {
    /// Whether this block grants `action`.
    pub fn permits(&self, action: &str) -> bool {
        self.actions.iter().any(|p| action_matches(p, action))
            && !self.not_actions.iter().any(|p| action_matches(p, action))
    }

    /// Whether this block grants data action `action` (`dataActions` minus `notDataActions`;
    /// `actions` never grant data actions, as in Azure).
    pub fn permits_data(&self, action: &str) -> bool {
        self.data_actions.iter().any(|p| action_matches(p, action))
            && !self
                .not_data_actions
                .iter()
                .any(|p| action_matches(p, action))
    }
}

/// A role (built-in or custom) as the evaluator uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDefinition {
    pub role_name: String,
    /// Lowercase GUID, when known.
    pub id: Option<String>,
    pub built_in: bool,
    pub permissions: Vec<Permission>,
}

impl RoleDefinition {
    /// Whether any permission block of the role grants `action`.
    pub fn permits(&self, action: &str) -> bool {
        self.permissions.iter().any(|p| p.permits(action))
    }

    /// Whether any permission block of the role grants data action `action`.
    pub fn permits_data(&self, action: &str) -> bool {
        self.permissions.iter().any(|p| p.permits_data(action))
    }
}

impl From<&BuiltInRole> for RoleDefinition {
    fn from(r: &BuiltInRole) -> Self {
        Self {
            role_name: r.name.to_owned(),
            id: Some(r.id.to_owned()),
            built_in: true,
            permissions: vec![Permission {
                actions: r.actions.iter().map(|s| (*s).to_owned()).collect(),
                not_actions: r.not_actions.iter().map(|s| (*s).to_owned()).collect(),
                data_actions: r.data_actions.iter().map(|s| (*s).to_owned()).collect(),
                not_data_actions: Vec::new(),
            }],
        }
    }
}

/// A bare GUID, or the last segment of `…/roleDefinitions/<guid>`; returned lowercase hyphenated.
fn parse_role_definition_id(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches('/');
    let guid = match s.rfind('/') {
        None => s,
        Some(i) => {
            let (prefix, last) = (&s[..i], &s[i + 1..]);
            let kind = prefix.rsplit('/').next().unwrap_or_default();
            if !kind.eq_ignore_ascii_case("roleDefinitions") {
                return None;
            }
            last
        }
    };
    if guid.len() != 36 {
        return None;
    }
    uuid::Uuid::parse_str(guid)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

// ---------------------------------------------------------------------------------------------
// Scopes
// ---------------------------------------------------------------------------------------------

/// A validated role assignment scope: `/`, a subscription, a resource group or a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    text: String,
    /// Lowercased path segments; empty for the root scope.
    segments: Vec<String>,
}

impl Scope {
    /// Parses `/`, `/subscriptions/{uuid}`, `/subscriptions/{uuid}/resourceGroups/{rg}` or
    /// `/subscriptions/{uuid}/resourceGroups/{rg}/providers/{Namespace}/{type}/{name}[/{type}/{name}…]`
    /// (keywords case-insensitive, one trailing `/` tolerated). Management-group scopes are not
    /// supported: their hierarchy is not visible in the path.
    pub fn parse(s: &str) -> Result<Self, String> {
        let text = s.trim();
        if text == "/" {
            return Ok(Self {
                text: "/".into(),
                segments: Vec::new(),
            });
        }
        let shape = "expected '/', '/subscriptions/{subscriptionId}', '/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}' or '/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{Namespace}/{type}/{name}'";
        let Some(body) = text.strip_prefix('/') else {
            return Err(format!("scope '{text}' does not start with '/'; {shape}"));
        };
        let body = body.strip_suffix('/').unwrap_or(body);
        let parts: Vec<&str> = body.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("scope '{text}' has an empty path segment; {shape}"));
        }
        if parts[0].eq_ignore_ascii_case("providers") {
            return Err(format!(
                "scope '{text}': management-group and tenant-level provider scopes are not supported; {shape}"
            ));
        }
        if !parts[0].eq_ignore_ascii_case("subscriptions") || parts.len() < 2 {
            return Err(format!("scope '{text}' is malformed; {shape}"));
        }
        crate::arm::validate_subscription(parts[1]).map_err(|_| {
            format!(
                "scope '{text}': subscription id '{}' is not a GUID",
                parts[1]
            )
        })?;
        if parts.len() > 2 {
            if !parts[2].eq_ignore_ascii_case("resourceGroups") || parts.len() < 4 {
                return Err(format!("scope '{text}' is malformed; {shape}"));
            }
            crate::arm::validate_resource_group(parts[3])
                .map_err(|e| format!("scope '{text}': {}", e.message))?;
        }
        if parts.len() > 4 {
            let well_formed = parts[4].eq_ignore_ascii_case("providers")
                && parts[5..].len() >= 3
                && parts[5..].len() % 2 == 1
                && parts[5].contains('.');
            if !well_formed {
                return Err(format!("scope '{text}' is malformed; {shape}"));
            }
        }
        Ok(Self {
            text: text.to_owned(),
            segments: parts.iter().map(|p| p.to_lowercase()).collect(),
        })
    }

    /// The scope as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this scope is `resource_id` itself or one of its ancestors: a prefix on whole path
    /// segments, compared case-insensitively. The root scope contains everything.
    pub fn contains(&self, resource_id: &str) -> bool {
        let id = resource_id.trim();
        let id = id.strip_prefix('/').unwrap_or(id);
        let id = id.strip_suffix('/').unwrap_or(id);
        let mut segments = id.split('/').filter(|_| !id.is_empty());
        self.segments.iter().all(|want| {
            segments
                .next()
                .is_some_and(|got| got.to_lowercase() == *want)
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions and messages
// ---------------------------------------------------------------------------------------------

/// Who is calling, as the messages name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The `oid` claim; what role assignments name.
    pub object_id: String,
    /// What ARM prints as "The client '…'": see [`Claims::client`].
    pub client: String,
}

impl Principal {
    pub fn new(object_id: impl Into<String>, client: impl Into<String>) -> Self {
        Self {
            object_id: object_id.into(),
            client: client.into(),
        }
    }

    pub fn from_claims(claims: &Claims) -> Self {
        Self::new(claims.oid.clone(), claims.client())
    }
}

/// A refused request: HTTP 403 with `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// [`AUTHORIZATION_FAILED`] or [`LINKED_AUTHORIZATION_FAILED`].
    pub code: &'static str,
    pub message: String,
}

impl Denial {
    /// The HTTP status ARM answers with.
    pub const STATUS: u16 = 403;

    pub fn status(&self) -> u16 {
        Self::STATUS
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Denial {}

/// ARM's `AuthorizationFailed`.
pub fn authorization_failed(client: &str, oid: &str, action: &str, scope: &str) -> Denial {
    Denial {
        code: AUTHORIZATION_FAILED,
        message: format!(
            "The client '{client}' with object id '{oid}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."
        ),
    }
}

/// ARM's `LinkedAuthorizationFailed` (current wording, one linked action and scope).
pub fn linked_authorization_failed(
    client: &str,
    oid: &str,
    action: &str,
    scope: &str,
    linked_action: &str,
    linked_scope: &str,
) -> Denial {
    Denial {
        code: LINKED_AUTHORIZATION_FAILED,
        message: format!(
            "The client '{client}' with object id '{oid}' has permission to perform action '{action}' on scope '{scope}'; however, it does not have permission to perform action(s) '{linked_action}' on the linked scope(s) '{linked_scope}' (respectively) or the linked scope(s) are invalid."
        ),
    }
}

/// Checks one action on one scope; the denial echoes `scope` as given.
pub fn check(
    cfg: &RbacConfig,
    principal: &Principal,
    action: &str,
    scope: &str,
) -> Result<(), Denial> {
    if cfg.is_allowed(&principal.object_id, action, scope) {
        Ok(())
    } else {
        Err(authorization_failed(
            &principal.client,
            &principal.object_id,
            action,
            scope,
        ))
    }
}

/// The authorization of `importImage`: [`IMPORT_ACTION`] on the target registry, then, for a
/// `source.resourceId` import, [`REGISTRY_READ`] on the source registry (a linked scope).
/// A `registryUri` import has no linked scope: pass `None`.
pub fn check_import(
    cfg: &RbacConfig,
    principal: &Principal,
    target_scope: &str,
    source_scope: Option<&str>,
) -> Result<(), Denial> {
    check(cfg, principal, IMPORT_ACTION, target_scope)?;
    match source_scope {
        Some(source) if !cfg.is_allowed(&principal.object_id, REGISTRY_READ, source) => {
            Err(linked_authorization_failed(
                &principal.client,
                &principal.object_id,
                IMPORT_ACTION,
                target_scope,
                REGISTRY_READ,
                source,
            ))
        }
        _ => Ok(()),
    }
}

mod claims;
mod config;
mod roles;

pub use claims::*;
pub use config::*;
pub use roles::*;

#[cfg(test)]
mod tests;
