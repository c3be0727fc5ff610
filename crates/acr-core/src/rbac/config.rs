//! The `--rbac-config` file: role assignments and custom role definitions, validated.

use super::*;

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
    #[error("RBAC configuration is not valid")]
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
