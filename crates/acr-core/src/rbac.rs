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

/// A built-in role as published by Azure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltInRole {
    pub name: &'static str,
    /// The role definition GUID, the same in every cloud.
    pub id: &'static str,
    pub actions: &'static [&'static str],
    pub not_actions: &'static [&'static str],
    /// Data actions (the registries' repository permissions of ABAC mode).
    pub data_actions: &'static [&'static str],
}

/// The built-in roles this emulator knows, with their real action lists.
pub const BUILT_IN_ROLES: &[BuiltInRole] = &[
    BuiltInRole {
        name: "Owner",
        id: "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        actions: &["*"],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltInRole {
        name: "Contributor",
        id: "b24988ac-6180-42a0-ab88-20f7382dd24c",
        actions: &["*"],
        not_actions: &[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
            "Microsoft.Purview/consents/write",
            "Microsoft.Purview/consents/delete",
            "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
            "Microsoft.Subscription/cancel/action",
            "Microsoft.Subscription/enable/action",
        ],
        data_actions: &[],
    },
    BuiltInRole {
        name: "Reader",
        id: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        actions: &["*/read"],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltInRole {
        name: "AcrPull",
        id: "7f951dda-4ed3-4680-a7ca-43fe172d538d",
        actions: &["Microsoft.ContainerRegistry/registries/pull/read"],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltInRole {
        name: "AcrPush",
        id: "8311e382-0749-4cb8-b61a-304f252e45ec",
        actions: &[
            "Microsoft.ContainerRegistry/registries/pull/read",
            "Microsoft.ContainerRegistry/registries/push/write",
        ],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltInRole {
        name: "AcrDelete",
        id: "c2f4ef07-c644-48eb-af81-4b1b4947fb11",
        actions: &["Microsoft.ContainerRegistry/registries/artifacts/delete"],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltInRole {
        name: "AcrImageSigner",
        id: "6cef56e8-d556-48e5-a04f-b8e64114680f",
        actions: &["Microsoft.ContainerRegistry/registries/sign/write"],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltInRole {
        name: "AcrQuarantineReader",
        id: "cdda3590-29a3-44f6-95f2-9f980659eb04",
        actions: &["Microsoft.ContainerRegistry/registries/quarantine/read"],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltInRole {
        name: "AcrQuarantineWriter",
        id: "c8d4ff99-41c3-41a8-9f60-21dfdad59608",
        actions: &[
            "Microsoft.ContainerRegistry/registries/quarantine/read",
            "Microsoft.ContainerRegistry/registries/quarantine/write",
        ],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltInRole {
        name: "Container Registry Data Importer and Data Reader",
        id: "577a9874-89fd-4f24-9dbd-b5034d0ad23a",
        actions: &[
            "Microsoft.ContainerRegistry/registries/importImage/action",
            "Microsoft.ContainerRegistry/registries/read",
            "Microsoft.ContainerRegistry/registries/pull/read",
        ],
        not_actions: &[],
        data_actions: &[
            "Microsoft.ContainerRegistry/registries/repositories/content/read",
            "Microsoft.ContainerRegistry/registries/repositories/metadata/read",
            "Microsoft.ContainerRegistry/registries/catalog/read",
        ],
    },
    BuiltInRole {
        name: "Container Registry Configuration Reader and Data Access Configuration Reader",
        id: "69b07be0-09bf-439a-b9a6-e73de851bd59",
        actions: &[
            "Microsoft.ContainerRegistry/registries/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/read",
            "Microsoft.ContainerRegistry/registries/privateEndpointConnections/read",
            "Microsoft.ContainerRegistry/registries/privateEndpointConnections/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/listCredentials/action",
            "Microsoft.ContainerRegistry/registries/tokens/read",
            "Microsoft.ContainerRegistry/registries/tokens/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/scopeMaps/read",
            "Microsoft.ContainerRegistry/registries/scopeMaps/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/webhooks/read",
            "Microsoft.ContainerRegistry/registries/webhooks/getCallbackConfig/action",
            "Microsoft.ContainerRegistry/registries/webhooks/listEvents/action",
            "Microsoft.ContainerRegistry/registries/webhooks/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/replications/read",
            "Microsoft.ContainerRegistry/registries/replications/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/connectedRegistries/read",
            "Microsoft.ContainerRegistry/registries/providers/Microsoft.Insights/diagnosticSettings/read",
            "Microsoft.ContainerRegistry/registries/providers/Microsoft.Insights/diagnosticSettings/write",
            "Microsoft.ContainerRegistry/registries/providers/Microsoft.Insights/logDefinitions/read",
            "Microsoft.ContainerRegistry/registries/providers/Microsoft.Insights/metricDefinitions/read",
            "Microsoft.Insights/AlertRules/Write",
            "Microsoft.Insights/AlertRules/Delete",
            "Microsoft.Insights/AlertRules/Read",
            "Microsoft.Insights/AlertRules/Activated/Action",
            "Microsoft.Insights/AlertRules/Resolved/Action",
            "Microsoft.Insights/AlertRules/Throttled/Action",
            "Microsoft.Insights/AlertRules/Incidents/Read",
        ],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltInRole {
        name: "Container Registry Contributor and Data Access Configuration Administrator",
        id: "3bc748fc-213d-45c1-8d91-9da5725539b9",
        actions: &[
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.ContainerRegistry/registries/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/read",
            "Microsoft.ContainerRegistry/registries/write",
            "Microsoft.ContainerRegistry/registries/delete",
            "Microsoft.ContainerRegistry/registries/listCredentials/action",
            "Microsoft.ContainerRegistry/registries/regenerateCredential/action",
            "Microsoft.ContainerRegistry/registries/generateCredentials/action",
            "Microsoft.ContainerRegistry/registries/replications/read",
            "Microsoft.ContainerRegistry/registries/replications/write",
            "Microsoft.ContainerRegistry/registries/replications/delete",
            "Microsoft.ContainerRegistry/registries/replications/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/privateEndpointConnectionsApproval/action",
            "Microsoft.ContainerRegistry/registries/privateEndpointConnections/read",
            "Microsoft.ContainerRegistry/registries/privateEndpointConnections/write",
            "Microsoft.ContainerRegistry/registries/privateEndpointConnections/delete",
            "Microsoft.ContainerRegistry/registries/privateEndpointConnections/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/tokens/read",
            "Microsoft.ContainerRegistry/registries/tokens/write",
            "Microsoft.ContainerRegistry/registries/tokens/delete",
            "Microsoft.ContainerRegistry/registries/tokens/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/scopeMaps/read",
            "Microsoft.ContainerRegistry/registries/scopeMaps/write",
            "Microsoft.ContainerRegistry/registries/scopeMaps/delete",
            "Microsoft.ContainerRegistry/registries/scopeMaps/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/providers/Microsoft.Insights/diagnosticSettings/read",
            "Microsoft.ContainerRegistry/registries/providers/Microsoft.Insights/diagnosticSettings/write",
            "Microsoft.ContainerRegistry/registries/providers/Microsoft.Insights/logDefinitions/read",
            "Microsoft.ContainerRegistry/registries/providers/Microsoft.Insights/metricDefinitions/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Authorization/*/read",
            "Microsoft.ContainerRegistry/registries/connectedRegistries/read",
            "Microsoft.ContainerRegistry/registries/connectedRegistries/write",
            "Microsoft.ContainerRegistry/registries/connectedRegistries/delete",
            "Microsoft.ContainerRegistry/registries/connectedRegistries/deactivate/action",
            "Microsoft.ContainerRegistry/registries/webhooks/read",
            "Microsoft.ContainerRegistry/registries/webhooks/write",
            "Microsoft.ContainerRegistry/registries/webhooks/delete",
            "Microsoft.ContainerRegistry/registries/webhooks/getCallbackConfig/action",
            "Microsoft.ContainerRegistry/registries/webhooks/ping/action",
            "Microsoft.ContainerRegistry/registries/webhooks/listEvents/action",
            "Microsoft.ContainerRegistry/registries/webhooks/operationStatuses/read",
            "Microsoft.Insights/AlertRules/Write",
            "Microsoft.Insights/AlertRules/Delete",
            "Microsoft.Insights/AlertRules/Read",
            "Microsoft.Insights/AlertRules/Activated/Action",
            "Microsoft.Insights/AlertRules/Resolved/Action",
            "Microsoft.Insights/AlertRules/Throttled/Action",
            "Microsoft.Insights/AlertRules/Incidents/Read",
            "Microsoft.ContainerRegistry/locations/operationResults/read",
            "Microsoft.Network/virtualNetworks/subnets/joinViaServiceEndpoint/action",
            "Microsoft.Network/virtualNetworks/subnets/read",
            "Microsoft.Network/virtualNetworks/subnets/write",
            "Microsoft.Network/virtualNetworks/read",
            "Microsoft.Network/privateEndpoints/privateLinkServiceProxies/write",
        ],
        not_actions: &[],
        data_actions: &[],
    },
    // The repository roles of registries in `AbacRepositoryPermissions` mode (data actions only).
    BuiltInRole {
        name: "Container Registry Repository Reader",
        id: "b93aa761-3e63-49ed-ac28-beffa264f7ac",
        actions: &[],
        not_actions: &[],
        data_actions: &[
            "Microsoft.ContainerRegistry/registries/repositories/metadata/read",
            "Microsoft.ContainerRegistry/registries/repositories/content/read",
        ],
    },
    BuiltInRole {
        name: "Container Registry Repository Writer",
        id: "2a1e307c-b015-4ebd-883e-5b7698a07328",
        actions: &[],
        not_actions: &[],
        data_actions: &[
            "Microsoft.ContainerRegistry/registries/repositories/metadata/read",
            "Microsoft.ContainerRegistry/registries/repositories/content/read",
            "Microsoft.ContainerRegistry/registries/repositories/metadata/write",
            "Microsoft.ContainerRegistry/registries/repositories/content/write",
        ],
    },
    BuiltInRole {
        name: "Container Registry Repository Contributor",
        id: "2efddaa5-3f1f-4df3-97df-af3f13818f4c",
        actions: &[],
        not_actions: &[],
        data_actions: &[
            "Microsoft.ContainerRegistry/registries/repositories/metadata/read",
            "Microsoft.ContainerRegistry/registries/repositories/content/read",
            "Microsoft.ContainerRegistry/registries/repositories/metadata/write",
            "Microsoft.ContainerRegistry/registries/repositories/content/write",
            "Microsoft.ContainerRegistry/registries/repositories/metadata/delete",
            "Microsoft.ContainerRegistry/registries/repositories/content/delete",
        ],
    },
    BuiltInRole {
        name: "Container Registry Repository Catalog Lister",
        id: "bfdb9389-c9a5-478a-bb2f-ba9ca092c3c7",
        actions: &[],
        not_actions: &[],
        data_actions: &["Microsoft.ContainerRegistry/registries/catalog/read"],
    },
];

/// Finds a built-in role by name (case-insensitive) or id (bare GUID or full role definition id).
pub fn built_in_role(name_or_id: &str) -> Option<&'static BuiltInRole> {
    let id = parse_role_definition_id(name_or_id);
    BUILT_IN_ROLES
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(name_or_id.trim()) || id.as_deref() == Some(r.id))
}

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
// The configuration file
// ---------------------------------------------------------------------------------------------

/// The configuration file as written (camelCase JSON); validated into an [`RbacConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RbacFile {
    #[serde(default)]
    pub role_assignments: Vec<RoleAssignmentSpec>,
    #[serde(default)]
    pub role_definitions: Vec<RoleDefinitionSpec>,
}

/// One `roleAssignments[]` entry. Exactly one role reference is needed; when both are present
/// they must name the same role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentSpec {
    pub principal_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_definition_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_definition_id: Option<String>,
    pub scope: String,
}

/// One `roleDefinitions[]` entry (a custom role).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinitionSpec {
    pub role_name: String,
    /// A GUID or a full role definition id, to be referenced by `roleDefinitionId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub not_actions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_actions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_data_actions: Vec<String>,
    /// Azure's own shape; each block is evaluated on its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<PermissionSpec>,
}

/// One `permissions[]` block of a custom role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionSpec {
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub not_actions: Vec<String>,
    #[serde(default)]
    pub data_actions: Vec<String>,
    #[serde(default)]
    pub not_data_actions: Vec<String>,
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum RbacConfigError {
    /// Not JSON, or JSON of the wrong shape (serde's message carries line and column).
    #[error("RBAC configuration is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A semantic error in one entry; `at` names it, e.g. `roleAssignments[2].scope`.
    #[error("RBAC configuration: {at}: {message}")]
    Invalid { at: String, message: String },
}

impl RbacConfigError {
    fn invalid(at: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            at: at.into(),
            message: message.into(),
        }
    }
}

/// A validated role assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Lowercase object id.
    pub principal_id: String,
    pub scope: Scope,
    /// Index into [`RbacConfig::roles`].
    pub role: usize,
}

/// Validated RBAC configuration: built-in plus custom roles, and the assignments.
///
/// Deserializing it (e.g. as part of a larger configuration) validates like
/// [`RbacConfig::from_json`]. The default configuration has no assignments and denies everything.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RbacFile")]
pub struct RbacConfig {
    roles: Vec<RoleDefinition>,
    assignments: Vec<Assignment>,
}

impl Default for RbacConfig {
    fn default() -> Self {
        Self {
            roles: BUILT_IN_ROLES.iter().map(RoleDefinition::from).collect(),
            assignments: Vec::new(),
        }
    }
}

impl TryFrom<RbacFile> for RbacConfig {
    type Error = RbacConfigError;

    fn try_from(file: RbacFile) -> Result<Self, Self::Error> {
        Self::from_file(file)
    }
}

impl RbacConfig {
    /// Parses and validates the JSON text of a configuration file. (Reading the file is the
    /// caller's business: this crate does no I/O.)
    pub fn from_json(text: &str) -> Result<Self, RbacConfigError> {
        let file: RbacFile = serde_json::from_str(text)?;
        Self::from_file(file)
    }

    /// Validates a parsed configuration file.
    pub fn from_file(file: RbacFile) -> Result<Self, RbacConfigError> {
        let mut cfg = Self::default();
        for (i, spec) in file.role_definitions.into_iter().enumerate() {
            let role = cfg.custom_role(i, spec)?;
            cfg.roles.push(role);
        }
        for (i, spec) in file.role_assignments.into_iter().enumerate() {
            let assignment = cfg.assignment(i, spec)?;
            cfg.assignments.push(assignment);
        }
        Ok(cfg)
    }

    fn custom_role(
        &self,
        i: usize,
        spec: RoleDefinitionSpec,
    ) -> Result<RoleDefinition, RbacConfigError> {
        let at = |field: &str| format!("roleDefinitions[{i}].{field}");
        let name = spec.role_name.trim();
        if name.is_empty() {
            return Err(RbacConfigError::invalid(
                at("roleName"),
                "the role name is empty",
            ));
        }
        if let Some(existing) = self.find_role_by_name(name) {
            let what = if existing.built_in {
                "a built-in role"
            } else {
                "already defined"
            };
            return Err(RbacConfigError::invalid(
                at("roleName"),
                format!("role name '{name}' is {what}; custom role names must be unique"),
            ));
        }
        let id = match spec.id.as_deref() {
            None => None,
            Some(raw) => {
                let id = parse_role_definition_id(raw).ok_or_else(|| {
                    RbacConfigError::invalid(
                        at("id"),
                        format!("'{raw}' is neither a GUID nor a '…/providers/Microsoft.Authorization/roleDefinitions/{{guid}}' id"),
                    )
                })?;
                if let Some(existing) = self.roles.iter().find(|r| r.id.as_deref() == Some(&id)) {
                    return Err(RbacConfigError::invalid(
                        at("id"),
                        format!(
                            "role id '{id}' is already used by role '{}'",
                            existing.role_name
                        ),
                    ));
                }
                Some(id)
            }
        };
        let mut blocks = Vec::new();
        if !spec.actions.is_empty()
            || !spec.not_actions.is_empty()
            || !spec.data_actions.is_empty()
            || !spec.not_data_actions.is_empty()
        {
            blocks.push((
                String::new(),
                PermissionSpec {
                    actions: spec.actions,
                    not_actions: spec.not_actions,
                    data_actions: spec.data_actions,
                    not_data_actions: spec.not_data_actions,
                },
            ));
        }
        blocks.extend(
            spec.permissions
                .into_iter()
                .enumerate()
                .map(|(j, p)| (format!("permissions[{j}]."), p)),
        );
        let mut permissions = Vec::new();
        for (prefix, block) in blocks {
            for (field, list) in [
                ("actions", &block.actions),
                ("notActions", &block.not_actions),
                ("dataActions", &block.data_actions),
                ("notDataActions", &block.not_data_actions),
            ] {
                for (k, pattern) in list.iter().enumerate() {
                    check_pattern(pattern).map_err(|m| {
                        RbacConfigError::invalid(at(&format!("{prefix}{field}[{k}]")), m)
                    })?;
                }
            }
            permissions.push(Permission {
                actions: block.actions,
                not_actions: block.not_actions,
                data_actions: block.data_actions,
                not_data_actions: block.not_data_actions,
            });
        }
        if !permissions
            .iter()
            .any(|p| !p.actions.is_empty() || !p.data_actions.is_empty())
        {
            return Err(RbacConfigError::invalid(
                at("actions"),
                format!("role '{name}' grants no action"),
            ));
        }
        Ok(RoleDefinition {
            role_name: name.to_owned(),
            id,
            built_in: false,
            permissions,
        })
    }

    fn assignment(
        &self,
        i: usize,
        spec: RoleAssignmentSpec,
    ) -> Result<Assignment, RbacConfigError> {
        let at = |field: &str| format!("roleAssignments[{i}].{field}");
        let principal_id = spec.principal_id.trim().to_lowercase();
        if principal_id.is_empty() {
            return Err(RbacConfigError::invalid(
                at("principalId"),
                "the principal id is empty",
            ));
        }
        let by_name = match spec.role_definition_name.as_deref() {
            None => None,
            Some(name) => Some(self.role_index_by_name(name).ok_or_else(|| {
                RbacConfigError::invalid(
                    at("roleDefinitionName"),
                    format!(
                        "unknown role '{name}'; known roles: {}",
                        self.roles
                            .iter()
                            .map(|r| r.role_name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?),
        };
        let by_id = match spec.role_definition_id.as_deref() {
            None => None,
            Some(raw) => {
                let id = parse_role_definition_id(raw).ok_or_else(|| {
                    RbacConfigError::invalid(
                        at("roleDefinitionId"),
                        format!("'{raw}' is neither a GUID nor a '…/providers/Microsoft.Authorization/roleDefinitions/{{guid}}' id"),
                    )
                })?;
                Some(
                    self.roles
                        .iter()
                        .position(|r| r.id.as_deref() == Some(id.as_str()))
                        .ok_or_else(|| {
                            RbacConfigError::invalid(
                                at("roleDefinitionId"),
                                format!("no built-in or custom role has the id '{id}'"),
                            )
                        })?,
                )
            }
        };
        let role = match (by_name, by_id) {
            (Some(a), Some(b)) if a != b => {
                return Err(RbacConfigError::invalid(
                    at("roleDefinitionId"),
                    format!(
                        "roleDefinitionName names role '{}' but roleDefinitionId names role '{}'",
                        self.roles[a].role_name, self.roles[b].role_name
                    ),
                ))
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => {
                return Err(RbacConfigError::invalid(
                    at("roleDefinitionName"),
                    "either roleDefinitionName or roleDefinitionId is required",
                ))
            }
        };
        let scope =
            Scope::parse(&spec.scope).map_err(|m| RbacConfigError::invalid(at("scope"), m))?;
        Ok(Assignment {
            principal_id,
            scope,
            role,
        })
    }

    fn role_index_by_name(&self, name: &str) -> Option<usize> {
        let name = name.trim().to_lowercase();
        self.roles
            .iter()
            .position(|r| r.role_name.to_lowercase() == name)
    }

    fn find_role_by_name(&self, name: &str) -> Option<&RoleDefinition> {
        self.role_index_by_name(name).map(|i| &self.roles[i])
    }

    /// A role by name (case-insensitive) or id (bare GUID or full role definition id).
    pub fn role(&self, name_or_id: &str) -> Option<&RoleDefinition> {
        self.find_role_by_name(name_or_id).or_else(|| {
            let id = parse_role_definition_id(name_or_id)?;
            self.roles.iter().find(|r| r.id.as_deref() == Some(&id))
        })
    }

    /// All roles: the built-ins first, then the custom roles in file order.
    pub fn roles(&self) -> &[RoleDefinition] {
        &self.roles
    }

    /// The assignments in file order.
    pub fn assignments(&self) -> &[Assignment] {
        &self.assignments
    }

    /// Whether the principal with object id `principal_oid` may perform `action` on the resource
    /// (or subscription, or resource group) `scope`.
    pub fn is_allowed(&self, principal_oid: &str, action: &str, scope: &str) -> bool {
        let oid = principal_oid.trim().to_lowercase();
        self.assignments.iter().any(|a| {
            a.principal_id == oid && a.scope.contains(scope) && self.roles[a.role].permits(action)
        })
    }

    /// Whether the principal may perform data action `action` on `scope` (from the roles'
    /// `dataActions` only).
    pub fn is_data_allowed(&self, principal_oid: &str, action: &str, scope: &str) -> bool {
        let oid = principal_oid.trim().to_lowercase();
        self.assignments.iter().any(|a| {
            a.principal_id == oid
                && a.scope.contains(scope)
                && self.roles[a.role].permits_data(action)
        })
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

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// The audiences ARM accepts, in the order its error message lists them.
pub const ARM_AUDIENCES: &[&str] = &[
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
];

/// The claims of an Entra ID access token that authorization needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Object id of the principal (user, service principal, managed identity).
    pub oid: String,
    /// Tenant id.
    pub tid: String,
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Application (client) id, v1 tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// Application (client) id, v2 tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    /// User principal name (users only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    /// Display sign-in name, v1 tokens (users only; guests have it without `upn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

impl Claims {
    /// The application (client) id: `appid`, else `azp`.
    pub fn application_id(&self) -> Option<&str> {
        self.appid.as_deref().or(self.azp.as_deref())
    }

    /// What ARM prints as "The client '…'": the user principal name for a user (`upn`, else
    /// `unique_name`), otherwise the object id — ARM shows a service principal's or managed
    /// identity's object id twice, not its application id.
    pub fn client(&self) -> String {
        [self.upn.as_deref(), self.unique_name.as_deref()]
            .into_iter()
            .flatten()
            .find(|s| !s.trim().is_empty())
            .unwrap_or(&self.oid)
            .to_owned()
    }

    /// Whether the token has expired at `now` (seconds since the epoch).
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.exp <= now
    }

    /// ARM's audience check: `aud` must be exactly one of [`ARM_AUDIENCES`].
    pub fn check_arm_audience(&self) -> Result<(), TokenError> {
        if ARM_AUDIENCES.contains(&self.aud.as_str()) {
            Ok(())
        } else {
            Err(TokenError::WrongAudience(self.aud.clone()))
        }
    }
}

/// Why a bearer token was refused (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the token has {0} dot-separated segment(s); a JWT has three (header.payload.signature)"
    )]
    Segments(usize),
    #[error("the JWT {0} is not base64url")]
    Base64(&'static str),
    #[error("the JWT {part} is not a JSON object: {reason}")]
    Json { part: &'static str, reason: String },
    #[error("the token has no '{0}' claim")]
    MissingClaim(&'static str),
    #[error("the token's claims are invalid: {0}")]
    InvalidClaims(String),
    #[error("the token's audience '{0}' is not Azure Resource Manager")]
    WrongAudience(String),
}

impl TokenError {
    /// The HTTP status ARM answers with.
    pub const STATUS: u16 = 401;

    /// ARM's error code for this refusal.
    pub fn arm_code(&self) -> &'static str {
        match self {
            Self::WrongAudience(_) => "InvalidAuthenticationTokenAudience",
            _ => "InvalidAuthenticationToken",
        }
    }

    /// ARM's message for this refusal. Missing object id: Azure/azure-sdk-for-java#1714; wrong
    /// audience: JetBrains/azure-tools-for-intellij#16; anything else: "The access token is
    /// invalid." (Azure/azure-powershell#27882).
    pub fn arm_message(&self) -> String {
        match self {
            Self::MissingClaim("oid") => "The received access token is not valid: at least one of the claims 'puid' or 'altsecid' or 'oid' should be present. If you are accessing as application please make sure service principal is properly created in the tenant.".to_owned(),
            Self::WrongAudience(aud) => format!(
                "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences {}.",
                ARM_AUDIENCES
                    .iter()
                    .map(|a| format!("'{a}'"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            _ => "The access token is invalid.".to_owned(),
        }
    }
}

/// base64url, with or without padding.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn decode_part(
    text: &str,
    part: &'static str,
) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
    let bytes = B64URL.decode(text).map_err(|_| TokenError::Base64(part))?;
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(TokenError::Json {
            part,
            reason: "not an object".into(),
        }),
        Err(e) => Err(TokenError::Json {
            part,
            reason: e.to_string(),
        }),
    }
}

/// Decodes the claims of a JWT **without verifying its signature** (the emulator trusts the
/// token's issuer by configuration). `token` is the bare token, without `Bearer `.
///
/// Requires three segments, a JSON-object header and payload, and the claims `oid`, `tid`, `aud`
/// and `exp` (`oid` non-empty).
pub fn decode_jwt_claims(token: &str) -> Result<Claims, TokenError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(TokenError::Segments(parts.len()));
    }
    decode_part(parts[0], "header")?;
    let payload = decode_part(parts[1], "payload")?;
    for claim in ["oid", "tid", "aud", "exp"] {
        if payload.get(claim).is_none_or(|v| v.is_null()) {
            return Err(TokenError::MissingClaim(claim));
        }
    }
    let claims: Claims = serde_json::from_value(serde_json::Value::Object(payload))
        .map_err(|e| TokenError::InvalidClaims(e.to_string()))?;
    if claims.oid.trim().is_empty() {
        return Err(TokenError::MissingClaim("oid"));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-0000-0000-0000-000000000001";
    const SUB2: &str = "00000000-0000-0000-0000-000000000002";
    const ALICE: &str = "11111111-1111-1111-1111-111111111111";
    const BOB: &str = "22222222-2222-2222-2222-222222222222";

    fn rg(name: &str) -> String {
        format!("/subscriptions/{SUB}/resourceGroups/{name}")
    }

    fn registry(group: &str, name: &str) -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/{name}"
        )
    }

    fn one(oid: &str, role: &str, scope: &str) -> RbacConfig {
        RbacConfig::from_json(
            &serde_json::json!({
                "roleAssignments": [{"principalId": oid, "roleDefinitionName": role, "scope": scope}]
            })
            .to_string(),
        )
        .expect("valid config")
    }

    fn err(json: serde_json::Value) -> String {
        RbacConfig::from_json(&json.to_string())
            .expect_err("invalid config")
            .to_string()
    }

    fn alice() -> Principal {
        Principal::new(ALICE, ALICE)
    }

    // ---- built-in roles

    #[test]
    fn contributor_can_import_and_read_but_not_assign_roles() {
        let cfg = one(ALICE, "Contributor", &rg("rg"));
        let reg = registry("rg", "target");
        assert!(cfg.is_allowed(ALICE, IMPORT_ACTION, &reg));
        assert!(cfg.is_allowed(ALICE, REGISTRY_READ, &reg));
        assert!(cfg.is_allowed(ALICE, REGISTRY_WRITE, &reg));
        assert!(cfg.is_allowed(ALICE, REGISTRY_DELETE, &reg));
        assert!(!cfg.is_allowed(ALICE, "Microsoft.Authorization/roleAssignments/write", &reg));
        assert!(!cfg.is_allowed(
            ALICE,
            "Microsoft.Authorization/roleAssignments/delete",
            &reg
        ));
        assert!(cfg.is_allowed(ALICE, "Microsoft.Authorization/roleAssignments/read", &reg));
        assert!(!cfg.is_allowed(ALICE, "Microsoft.Compute/galleries/share/action", &reg));
        assert!(check_import(&cfg, &alice(), &reg, Some(&registry("rg", "source"))).is_ok());
    }

    #[test]
    fn owner_can_do_everything() {
        let cfg = one(ALICE, "Owner", "/");
        for action in [
            IMPORT_ACTION,
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/elevateAccess/Action",
        ] {
            assert!(
                cfg.is_allowed(ALICE, action, &registry("rg", "target")),
                "{action}"
            );
        }
    }

    #[test]
    fn reader_reads_but_cannot_import() {
        let cfg = one(ALICE, "Reader", &format!("/subscriptions/{SUB}"));
        let reg = registry("rg", "target");
        assert!(cfg.is_allowed(ALICE, REGISTRY_READ, &reg));
        assert!(cfg.is_allowed(
            ALICE,
            "Microsoft.ContainerRegistry/registries/pull/read",
            &reg
        ));
        assert!(!cfg.is_allowed(ALICE, IMPORT_ACTION, &reg));
        assert!(!cfg.is_allowed(ALICE, REGISTRY_WRITE, &reg));
        let denial = check_import(&cfg, &alice(), &reg, None).expect_err("denied");
        assert_eq!(denial.code, AUTHORIZATION_FAILED);
        assert_eq!(denial.status(), 403);
    }

    #[test]
    fn acr_push_and_pull_cannot_import_or_read_the_resource() {
        for role in ["AcrPush", "AcrPull", "AcrDelete"] {
            let cfg = one(ALICE, role, &registry("rg", "target"));
            let reg = registry("rg", "target");
            assert!(!cfg.is_allowed(ALICE, IMPORT_ACTION, &reg), "{role}");
            assert!(!cfg.is_allowed(ALICE, REGISTRY_READ, &reg), "{role}");
        }
        let cfg = one(ALICE, "AcrPush", &registry("rg", "target"));
        assert!(cfg.is_allowed(
            ALICE,
            "Microsoft.ContainerRegistry/registries/push/write",
            &registry("rg", "target")
        ));
    }

    #[test]
    fn acr_specific_built_ins() {
        let reg = registry("rg", "target");
        let importer = one(
            ALICE,
            "Container Registry Data Importer and Data Reader",
            &reg,
        );
        assert!(importer.is_allowed(ALICE, IMPORT_ACTION, &reg));
        assert!(importer.is_allowed(ALICE, REGISTRY_READ, &reg));
        assert!(!importer.is_allowed(ALICE, REGISTRY_WRITE, &reg));

        let admin = one(
            ALICE,
            "container registry contributor and data access configuration administrator",
            &reg,
        );
        assert!(admin.is_allowed(ALICE, REGISTRY_WRITE, &reg));
        assert!(admin.is_allowed(ALICE, REGISTRY_DELETE, &reg));
        assert!(admin.is_allowed(ALICE, "Microsoft.Resources/deployments/write", &reg));
        assert!(!admin.is_allowed(ALICE, IMPORT_ACTION, &reg));
    }

    #[test]
    fn built_in_lookup_by_name_or_id() {
        assert_eq!(built_in_role("acrpush").map(|r| r.name), Some("AcrPush"));
        assert_eq!(
            built_in_role("B24988AC-6180-42A0-AB88-20F7382DD24C").map(|r| r.name),
            Some("Contributor")
        );
        assert_eq!(
            built_in_role(&format!(
                "/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"
            ))
            .map(|r| r.name),
            Some("Reader")
        );
        assert!(built_in_role("Superuser").is_none());
        // Every built-in has a well-formed GUID and valid patterns.
        for r in BUILT_IN_ROLES {
            assert_eq!(
                parse_role_definition_id(r.id).as_deref(),
                Some(r.id),
                "{}",
                r.name
            );
            for p in r.actions.iter().chain(r.not_actions) {
                assert!(check_pattern(p).is_ok(), "{p}");
            }
        }
    }

    #[test]
    fn assignment_by_role_definition_id() {
        let cfg = RbacConfig::from_json(
            &serde_json::json!({"roleAssignments": [
                {"principalId": ALICE, "scope": rg("rg"),
                 "roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c")},
                {"principalId": BOB, "scope": rg("rg"),
                 "roleDefinitionId": "acdd72a7-3385-48ef-bd42-f606fba81ae7", "roleDefinitionName": "reader",
                 "principalType": "User", "id": "/whatever"}
            ]})
            .to_string(),
        )
        .expect("valid");
        let reg = registry("rg", "target");
        assert!(cfg.is_allowed(ALICE, IMPORT_ACTION, &reg));
        assert!(cfg.is_allowed(BOB, REGISTRY_READ, &reg));
        assert!(!cfg.is_allowed(BOB, IMPORT_ACTION, &reg));
    }

    // ---- custom roles, wildcards, notActions

    #[test]
    fn custom_role_grants_exactly_its_actions() {
        let cfg = RbacConfig::from_json(
            &serde_json::json!({
                "roleAssignments": [{"principalId": ALICE, "roleDefinitionName": "importer", "scope": rg("rg")}],
                "roleDefinitions": [{"roleName": "Importer",
                    "actions": [IMPORT_ACTION, REGISTRY_READ], "notActions": []}]
            })
            .to_string(),
        )
        .expect("valid");
        let reg = registry("rg", "target");
        assert!(cfg.is_allowed(ALICE, IMPORT_ACTION, &reg));
        assert!(cfg.is_allowed(ALICE, REGISTRY_READ, &reg));
        assert!(!cfg.is_allowed(ALICE, REGISTRY_WRITE, &reg));
        assert!(check_import(&cfg, &alice(), &reg, Some(&registry("rg", "src"))).is_ok());
        assert!(cfg.role("IMPORTER").is_some_and(|r| !r.built_in));
    }

    #[test]
    fn custom_role_with_id_and_permissions_blocks() {
        let cfg = RbacConfig::from_json(
            &serde_json::json!({
                "roleAssignments": [{"principalId": ALICE, "scope": "/",
                    "roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}],
                "roleDefinitions": [{"roleName": "Blocks", "id": "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE",
                    "permissions": [
                        {"actions": ["Microsoft.ContainerRegistry/*"], "notActions": ["Microsoft.ContainerRegistry/registries/importImage/action"]},
                        {"actions": ["Microsoft.ContainerRegistry/registries/*/action"], "notActions": []}
                    ]}]
            })
            .to_string(),
        )
        .expect("valid");
        let reg = registry("rg", "target");
        // notActions of the first block do not remove what the second block grants.
        assert!(cfg.is_allowed(ALICE, IMPORT_ACTION, &reg));
        assert!(cfg.is_allowed(ALICE, REGISTRY_WRITE, &reg));
        assert!(!cfg.is_allowed(ALICE, "Microsoft.Network/virtualNetworks/read", &reg));
    }

    #[test]
    fn not_actions_subtract_within_a_role_but_other_assignments_still_grant() {
        let cfg = RbacConfig::from_json(
            &serde_json::json!({
                "roleAssignments": [
                    {"principalId": ALICE, "roleDefinitionName": "NoImport", "scope": rg("rg")},
                    {"principalId": BOB, "roleDefinitionName": "NoImport", "scope": rg("rg")},
                    {"principalId": BOB, "roleDefinitionName": "Contributor", "scope": registry("rg", "target")}
                ],
                "roleDefinitions": [{"roleName": "NoImport", "actions": ["*"],
                    "notActions": ["Microsoft.ContainerRegistry/registries/*/action"]}]
            })
            .to_string(),
        )
        .expect("valid");
        let reg = registry("rg", "target");
        assert!(!cfg.is_allowed(ALICE, IMPORT_ACTION, &reg));
        assert!(cfg.is_allowed(ALICE, REGISTRY_WRITE, &reg));
        assert!(cfg.is_allowed(BOB, IMPORT_ACTION, &reg));
        assert!(!cfg.is_allowed(BOB, IMPORT_ACTION, &registry("rg", "other")));
    }

    #[test]
    fn wildcards() {
        let yes = [
            ("*", IMPORT_ACTION),
            ("*/read", REGISTRY_READ),
            ("*/read", "Microsoft.ContainerRegistry/registries/pull/read"),
            ("Microsoft.ContainerRegistry/*", IMPORT_ACTION),
            (
                "Microsoft.ContainerRegistry/registries/*/action",
                IMPORT_ACTION,
            ),
            (
                "Microsoft.ContainerRegistry/registries/import*",
                IMPORT_ACTION,
            ),
            (
                "microsoft.containerregistry/REGISTRIES/importimage/ACTION",
                IMPORT_ACTION,
            ),
            (
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/roleAssignments/delete",
            ),
            ("Microsoft.Container*/registries/read", REGISTRY_READ),
            ("*read", REGISTRY_READ),
            ("**", "x"),
        ];
        for (p, a) in yes {
            assert!(action_matches(p, a), "{p} should match {a}");
        }
        let no = [
            ("*/read", REGISTRY_WRITE),
            ("*/read", IMPORT_ACTION),
            (
                "Microsoft.ContainerRegistry/*",
                "Microsoft.Compute/virtualMachines/read",
            ),
            (
                "Microsoft.ContainerRegistry/registries/*/action",
                REGISTRY_READ,
            ),
            ("Microsoft.ContainerRegistry/registries", REGISTRY_READ),
            (
                REGISTRY_READ,
                "Microsoft.ContainerRegistry/registries/read/more",
            ),
            (
                "Microsoft.ContainerRegistry/registries/read",
                "Microsoft.ContainerRegistry/registries/rea",
            ),
            ("", "x"),
        ];
        for (p, a) in no {
            assert!(!action_matches(p, a), "{p} should not match {a}");
        }
    }

    // ---- scopes

    #[test]
    fn scope_inheritance() {
        let reg = registry("rg", "target");
        let sub = one(ALICE, "Contributor", &format!("/subscriptions/{SUB}"));
        assert!(sub.is_allowed(ALICE, IMPORT_ACTION, &reg));
        assert!(sub.is_allowed(ALICE, IMPORT_ACTION, &format!("/subscriptions/{SUB}")));
        assert!(!sub.is_allowed(
            ALICE,
            IMPORT_ACTION,
            &format!("/subscriptions/{SUB2}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/target")
        ));

        let group = one(ALICE, "Contributor", &rg("rg"));
        assert!(group.is_allowed(ALICE, IMPORT_ACTION, &reg));
        assert!(!group.is_allowed(ALICE, IMPORT_ACTION, &registry("rg2", "target")));
        // Whole segments: 'rg' is not a prefix of 'rg-other'.
        assert!(!group.is_allowed(ALICE, IMPORT_ACTION, &registry("rg-other", "target")));
        // An assignment below the scope asked about does not grant it.
        assert!(!group.is_allowed(ALICE, IMPORT_ACTION, &format!("/subscriptions/{SUB}")));

        let resource = one(ALICE, "Contributor", &reg);
        assert!(resource.is_allowed(ALICE, IMPORT_ACTION, &reg));
        assert!(resource.is_allowed(ALICE, IMPORT_ACTION, &format!("{reg}/")));
        assert!(!resource.is_allowed(ALICE, IMPORT_ACTION, &registry("rg", "targetx")));
        assert!(!resource.is_allowed(ALICE, IMPORT_ACTION, &rg("rg")));

        let root = one(ALICE, "Reader", "/");
        assert!(root.is_allowed(ALICE, REGISTRY_READ, &reg));
        assert!(root.is_allowed(ALICE, REGISTRY_READ, "/"));
    }

    #[test]
    fn case_insensitivity() {
        let cfg = one(
            &ALICE.to_uppercase(),
            "cOnTrIbUtOr",
            &format!("/SUBSCRIPTIONS/{}/RESOURCEGROUPS/My-RG", SUB.to_uppercase()),
        );
        let reg = format!(
            "/subscriptions/{SUB}/resourcegroups/my-rg/providers/microsoft.containerregistry/registries/TARGET"
        );
        assert!(cfg.is_allowed(ALICE, &IMPORT_ACTION.to_uppercase(), &reg));
        assert!(cfg.is_allowed(&ALICE.to_uppercase(), IMPORT_ACTION, &reg));
        assert!(!cfg.is_allowed(BOB, IMPORT_ACTION, &reg));
    }

    #[test]
    fn scope_parsing() {
        for ok in [
            "/".to_owned(),
            format!("/subscriptions/{SUB}"),
            format!("/subscriptions/{SUB}/"),
            rg("my_rg.(1)"),
            registry("rg", "target"),
            format!("{}/replications/westus", registry("rg", "target")),
        ] {
            assert!(Scope::parse(&ok).is_ok(), "{ok}");
        }
        for bad in [
            String::new(),
            "subscriptions".to_owned(),
            "/subscriptions".to_owned(),
            "/subscriptions/not-a-guid".to_owned(),
            format!("//subscriptions/{SUB}"),
            format!("/subscriptions/{SUB}/resourceGroups"),
            format!("/subscriptions/{SUB}/groups/rg"),
            format!("/subscriptions/{SUB}/resourceGroups/rg/providers"),
            format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries"),
            format!("/subscriptions/{SUB}/resourceGroups/rg/providers/ContainerRegistry/registries/x"),
            format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/x/replications"),
            "/providers/Microsoft.Management/managementGroups/mg".to_owned(),
        ] {
            assert!(Scope::parse(&bad).is_err(), "{bad:?}");
        }
        let s = Scope::parse(&rg("RG")).expect("valid");
        assert_eq!(s.as_str(), rg("RG"));
        assert_eq!(s.to_string(), rg("RG"));
    }

    // ---- configuration errors

    #[test]
    fn config_errors_name_the_entry() {
        let e = err(serde_json::json!({"roleAssignments": [
            {"principalId": ALICE, "roleDefinitionName": "Reader", "scope": "/"},
            {"principalId": ALICE, "roleDefinitionName": "AcrPusher", "scope": "/"}
        ]}));
        assert!(
            e.starts_with("RBAC configuration: roleAssignments[1].roleDefinitionName: unknown role 'AcrPusher'; known roles: Owner, Contributor, Reader, AcrPull, AcrPush"),
            "{e}"
        );

        let e = err(serde_json::json!({"roleAssignments": [
            {"principalId": ALICE, "roleDefinitionName": "Reader", "scope": "/"},
            {"principalId": ALICE, "roleDefinitionName": "Reader", "scope": "/"},
            {"principalId": ALICE, "roleDefinitionName": "Reader", "scope": "/subscriptions/nope"}
        ]}));
        assert_eq!(
            e,
            "RBAC configuration: roleAssignments[2].scope: scope '/subscriptions/nope': subscription id 'nope' is not a GUID"
        );

        let e = err(serde_json::json!({"roleAssignments": [
            {"principalId": ALICE, "roleDefinitionName": "Reader", "scope": "subscriptions/x"}
        ]}));
        assert!(e.starts_with("RBAC configuration: roleAssignments[0].scope: scope 'subscriptions/x' does not start with '/'"), "{e}");

        let e = err(serde_json::json!({"roleAssignments": [{"principalId": ALICE, "scope": "/"}]}));
        assert_eq!(
            e,
            "RBAC configuration: roleAssignments[0].roleDefinitionName: either roleDefinitionName or roleDefinitionId is required"
        );

        let e = err(serde_json::json!({"roleAssignments": [
            {"principalId": " ", "roleDefinitionName": "Reader", "scope": "/"}]}));
        assert!(e.contains("roleAssignments[0].principalId"), "{e}");

        let e = err(serde_json::json!({"roleAssignments": [
            {"principalId": ALICE, "roleDefinitionId": "not-a-guid", "scope": "/"}]}));
        assert!(
            e.contains("roleAssignments[0].roleDefinitionId: 'not-a-guid' is neither a GUID"),
            "{e}"
        );

        let e = err(serde_json::json!({"roleAssignments": [
            {"principalId": ALICE, "roleDefinitionId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "scope": "/"}]}));
        assert!(
            e.contains(
                "no built-in or custom role has the id 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee'"
            ),
            "{e}"
        );

        let e = err(serde_json::json!({"roleAssignments": [
            {"principalId": ALICE, "roleDefinitionName": "Owner",
             "roleDefinitionId": "acdd72a7-3385-48ef-bd42-f606fba81ae7", "scope": "/"}]}));
        assert!(
            e.contains(
                "roleDefinitionName names role 'Owner' but roleDefinitionId names role 'Reader'"
            ),
            "{e}"
        );
    }

    #[test]
    fn custom_role_errors() {
        let e =
            err(serde_json::json!({"roleDefinitions": [{"roleName": "reader", "actions": ["*"]}]}));
        assert_eq!(
            e,
            "RBAC configuration: roleDefinitions[0].roleName: role name 'reader' is a built-in role; custom role names must be unique"
        );
        let e = err(serde_json::json!({"roleDefinitions": [
            {"roleName": "X", "actions": ["*"]}, {"roleName": "x", "actions": ["*"]}]}));
        assert!(
            e.contains("roleDefinitions[1].roleName: role name 'x' is already defined"),
            "{e}"
        );
        let e =
            err(serde_json::json!({"roleDefinitions": [{"roleName": "X", "notActions": ["*"]}]}));
        assert_eq!(
            e,
            "RBAC configuration: roleDefinitions[0].actions: role 'X' grants no action"
        );
        let e =
            err(serde_json::json!({"roleDefinitions": [{"roleName": "X", "actions": ["a b"]}]}));
        assert!(
            e.contains(
                "roleDefinitions[0].actions[0]: action pattern 'a b' contains the character ' '"
            ),
            "{e}"
        );
        let e = err(serde_json::json!({"roleDefinitions": [{"roleName": "X",
            "permissions": [{"actions": ["*"], "notActions": [""]}]}]}));
        assert!(
            e.contains(
                "roleDefinitions[0].permissions[0].notActions[0]: an action pattern is empty"
            ),
            "{e}"
        );
        let e = err(
            serde_json::json!({"roleDefinitions": [{"roleName": "X", "actions": ["*"],
            "id": "b24988ac-6180-42a0-ab88-20f7382dd24c"}]}),
        );
        assert!(e.contains("roleDefinitions[0].id: role id 'b24988ac-6180-42a0-ab88-20f7382dd24c' is already used by role 'Contributor'"), "{e}");
        let e = err(serde_json::json!({"roleDefinitions": [{"roleName": " ", "actions": ["*"]}]}));
        assert!(
            e.contains("roleDefinitions[0].roleName: the role name is empty"),
            "{e}"
        );
    }

    #[test]
    fn json_errors_and_empty_config() {
        let e = RbacConfig::from_json("{")
            .expect_err("not json")
            .to_string();
        assert!(e.starts_with("RBAC configuration is not valid: EOF"), "{e}");
        let e = err(
            serde_json::json!({"roleAssignments": [{"roleDefinitionName": "Reader", "scope": "/"}]}),
        );
        assert!(e.contains("missing field `principalId`"), "{e}");
        let empty = RbacConfig::from_json("{}").expect("valid");
        assert!(empty.assignments().is_empty());
        assert_eq!(empty.roles().len(), BUILT_IN_ROLES.len());
        assert!(!empty.is_allowed(ALICE, REGISTRY_READ, "/"));
        assert_eq!(empty, RbacConfig::default());
    }

    #[test]
    fn deserializes_with_validation() {
        #[derive(Deserialize)]
        struct Outer {
            rbac: RbacConfig,
        }
        let ok: Outer = serde_json::from_value(serde_json::json!({"rbac": {"roleAssignments": [
            {"principalId": ALICE, "roleDefinitionName": "Reader", "scope": "/"}]}}))
        .expect("valid");
        assert!(ok.rbac.is_allowed(ALICE, REGISTRY_READ, "/"));
        let bad = serde_json::from_value::<Outer>(serde_json::json!({"rbac": {"roleAssignments": [
            {"principalId": ALICE, "roleDefinitionName": "Nope", "scope": "/"}]}}));
        assert!(bad.is_err());
    }

    // ---- messages

    #[test]
    fn authorization_failed_text() {
        let d = authorization_failed(
            "c1",
            "o1",
            IMPORT_ACTION,
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r",
        );
        assert_eq!(d.code, "AuthorizationFailed");
        assert_eq!(
            d.message,
            "The client 'c1' with object id 'o1' does not have authorization to perform action 'Microsoft.ContainerRegistry/registries/importImage/action' over scope '/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r' or the scope is invalid. If access was recently granted, please refresh your credentials."
        );
    }

    #[test]
    fn linked_authorization_failed_text() {
        let d = linked_authorization_failed("c1", "o1", IMPORT_ACTION, "/t", REGISTRY_READ, "/s");
        assert_eq!(d.code, "LinkedAuthorizationFailed");
        assert_eq!(
            d.message,
            "The client 'c1' with object id 'o1' has permission to perform action 'Microsoft.ContainerRegistry/registries/importImage/action' on scope '/t'; however, it does not have permission to perform action(s) 'Microsoft.ContainerRegistry/registries/read' on the linked scope(s) '/s' (respectively) or the linked scope(s) are invalid."
        );
        assert_eq!(d.status(), 403);
        assert!(d
            .to_string()
            .starts_with("LinkedAuthorizationFailed: The client 'c1'"));
    }

    #[test]
    fn check_import_target_then_source() {
        let target = registry("rg", "target");
        let source = registry("other", "source");
        // Target only: the source is a linked scope without read.
        let cfg = one(ALICE, "Contributor", &target);
        assert!(check_import(&cfg, &alice(), &target, None).is_ok());
        let d = check_import(&cfg, &alice(), &target, Some(&source)).expect_err("linked");
        assert_eq!(d.code, LINKED_AUTHORIZATION_FAILED);
        assert_eq!(
            d.message,
            format!("The client '{ALICE}' with object id '{ALICE}' has permission to perform action '{IMPORT_ACTION}' on scope '{target}'; however, it does not have permission to perform action(s) '{REGISTRY_READ}' on the linked scope(s) '{source}' (respectively) or the linked scope(s) are invalid.")
        );

        // Reader on the source is enough for the linked check.
        let cfg = RbacConfig::from_json(
            &serde_json::json!({"roleAssignments": [
                {"principalId": ALICE, "roleDefinitionName": "Contributor", "scope": target},
                {"principalId": ALICE, "roleDefinitionName": "Reader", "scope": source}
            ]})
            .to_string(),
        )
        .expect("valid");
        assert!(check_import(&cfg, &alice(), &target, Some(&source)).is_ok());

        // AcrPull on the source is not.
        let cfg = RbacConfig::from_json(
            &serde_json::json!({"roleAssignments": [
                {"principalId": ALICE, "roleDefinitionName": "Contributor", "scope": target},
                {"principalId": ALICE, "roleDefinitionName": "AcrPull", "scope": source}
            ]})
            .to_string(),
        )
        .expect("valid");
        assert!(check_import(&cfg, &alice(), &target, Some(&source)).is_err());

        // The target is checked first, with the plain AuthorizationFailed text.
        let cfg = one(ALICE, "Reader", "/");
        let d = check_import(
            &cfg,
            &Principal::new(ALICE, "user@contoso.com"),
            &target,
            Some(&source),
        )
        .expect_err("denied");
        assert_eq!(d.code, AUTHORIZATION_FAILED);
        assert_eq!(
            d.message,
            format!("The client 'user@contoso.com' with object id '{ALICE}' does not have authorization to perform action '{IMPORT_ACTION}' over scope '{target}' or the scope is invalid. If access was recently granted, please refresh your credentials.")
        );
    }

    #[test]
    fn check_single_action() {
        let cfg = one(ALICE, "Reader", &rg("rg"));
        assert!(check(&cfg, &alice(), REGISTRY_READ, &registry("rg", "r")).is_ok());
        let d = check(&cfg, &alice(), REGISTRY_DELETE, &registry("rg", "r")).expect_err("denied");
        assert!(d
            .message
            .contains(&format!("perform action '{REGISTRY_DELETE}' over scope")));
    }

    // ---- tokens

    fn b64(v: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn jwt(payload: serde_json::Value) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(&serde_json::json!({"alg": "RS256", "typ": "JWT"})),
            b64(&payload)
        )
    }

    fn sp_payload() -> serde_json::Value {
        serde_json::json!({
            "aud": "https://management.azure.com/",
            "iss": "https://sts.windows.net/t/",
            "iat": 1_700_000_000, "nbf": 1_700_000_000, "exp": 1_700_003_600,
            "appid": "app-id", "appidacr": "1", "idp": "https://sts.windows.net/t/",
            "oid": ALICE, "sub": ALICE, "tid": "tenant-id", "ver": "1.0"
        })
    }

    #[test]
    fn decodes_a_service_principal_token() {
        let claims = decode_jwt_claims(&jwt(sp_payload())).expect("valid");
        assert_eq!(claims.oid, ALICE);
        assert_eq!(claims.tid, "tenant-id");
        assert_eq!(claims.aud, "https://management.azure.com/");
        assert_eq!(claims.exp, 1_700_003_600);
        assert_eq!(claims.application_id(), Some("app-id"));
        // ARM names a service principal by its object id.
        assert_eq!(claims.client(), ALICE);
        assert_eq!(
            Principal::from_claims(&claims),
            Principal::new(ALICE, ALICE)
        );
        assert!(claims.check_arm_audience().is_ok());
        assert!(!claims.is_expired_at(1_700_003_599));
        assert!(claims.is_expired_at(1_700_003_600));
    }

    #[test]
    fn user_tokens_name_the_user() {
        let mut p = sp_payload();
        p["upn"] = "alice@contoso.com".into();
        p["unique_name"] = "alice@contoso.com".into();
        let claims = decode_jwt_claims(&jwt(p)).expect("valid");
        assert_eq!(claims.client(), "alice@contoso.com");

        let mut p = sp_payload();
        p["unique_name"] = "live.com#guest@example.com".into();
        p.as_object_mut().map(|o| o.remove("appid"));
        p["azp"] = "v2-app".into();
        let claims = decode_jwt_claims(&format!("  {}\n", jwt(p))).expect("valid");
        assert_eq!(claims.client(), "live.com#guest@example.com");
        assert_eq!(claims.application_id(), Some("v2-app"));
    }

    #[test]
    fn padded_base64_and_empty_signature_are_accepted() {
        let header = base64::engine::general_purpose::URL_SAFE.encode(r#"{"alg":"none"}"#);
        let payload = base64::engine::general_purpose::URL_SAFE.encode(sp_payload().to_string());
        assert!(decode_jwt_claims(&format!("{header}.{payload}.")).is_ok());
    }

    #[test]
    fn malformed_tokens() {
        assert_eq!(decode_jwt_claims(""), Err(TokenError::Segments(1)));
        let two = jwt(sp_payload())
            .rsplit_once('.')
            .map(|(a, _)| a.to_owned())
            .unwrap_or_default();
        assert_eq!(decode_jwt_claims(&two), Err(TokenError::Segments(2)));
        assert_eq!(decode_jwt_claims("a.b.c.d.e"), Err(TokenError::Segments(5)));
        let header = b64(&serde_json::json!({"alg": "RS256"}));
        assert_eq!(
            decode_jwt_claims(&format!("{header}.!!!not-base64!!!.sig")),
            Err(TokenError::Base64("payload"))
        );
        assert_eq!(
            decode_jwt_claims(&format!("%%%.{}.sig", b64(&sp_payload()))),
            Err(TokenError::Base64("header"))
        );
        let not_json = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("hello");
        assert!(matches!(
            decode_jwt_claims(&format!("{header}.{not_json}.sig")),
            Err(TokenError::Json {
                part: "payload",
                ..
            })
        ));
        let array = b64(&serde_json::json!([1, 2]));
        assert!(matches!(
            decode_jwt_claims(&format!("{header}.{array}.sig")),
            Err(TokenError::Json {
                part: "payload",
                ..
            })
        ));
        let mut p = sp_payload();
        p["exp"] = "tomorrow".into();
        assert!(matches!(
            decode_jwt_claims(&jwt(p)),
            Err(TokenError::InvalidClaims(_))
        ));
    }

    #[test]
    fn missing_claims() {
        for claim in ["oid", "tid", "aud", "exp"] {
            let mut p = sp_payload();
            p.as_object_mut().map(|o| o.remove(claim));
            assert_eq!(
                decode_jwt_claims(&jwt(p)),
                Err(TokenError::MissingClaim(claim)),
                "{claim}"
            );
        }
        let mut p = sp_payload();
        p["oid"] = "".into();
        let e = decode_jwt_claims(&jwt(p)).expect_err("empty oid");
        assert_eq!(e, TokenError::MissingClaim("oid"));
        assert_eq!(e.arm_code(), "InvalidAuthenticationToken");
        assert_eq!(
            e.arm_message(),
            "The received access token is not valid: at least one of the claims 'puid' or 'altsecid' or 'oid' should be present. If you are accessing as application please make sure service principal is properly created in the tenant."
        );
        assert_eq!(TokenError::STATUS, 401);
        assert_eq!(
            TokenError::Segments(2).arm_message(),
            "The access token is invalid."
        );
        assert!(TokenError::Segments(2)
            .to_string()
            .contains("2 dot-separated segment(s)"));
    }

    #[test]
    fn audience_check() {
        let mut p = sp_payload();
        p["aud"] = "https://datalake.azure.net/".into();
        let claims = decode_jwt_claims(&jwt(p)).expect("valid");
        let e = claims.check_arm_audience().expect_err("wrong audience");
        assert_eq!(e.arm_code(), "InvalidAuthenticationTokenAudience");
        assert_eq!(
            e.arm_message(),
            "The access token has been obtained for wrong audience or resource 'https://datalake.azure.net/'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'."
        );
    }
}
