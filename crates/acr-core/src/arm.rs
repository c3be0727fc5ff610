//! ARM resource ids, path-parameter rules and the api-versions we accept.

use std::fmt;

use crate::Invalid;

pub const PROVIDER: &str = "Microsoft.ContainerRegistry";
pub const REGISTRY_TYPE: &str = "Microsoft.ContainerRegistry/registries";

/// api-versions of `Microsoft.ContainerRegistry` that carry `importImage`, newest stable last
/// among the stables. `2026-09-01-preview` is what Azure CLI 2.91 sends.
pub const IMPORT_API_VERSIONS: &[&str] = &[
    "2017-10-01",
    "2019-05-01",
    "2021-09-01",
    "2022-12-01",
    "2023-07-01",
    "2025-04-01",
    "2025-11-01",
    "2019-12-01-preview",
    "2020-11-01-preview",
    "2021-06-01-preview",
    "2021-08-01-preview",
    "2021-12-01-preview",
    "2022-02-01-preview",
    "2023-01-01-preview",
    "2023-06-01-preview",
    "2023-08-01-preview",
    "2023-11-01-preview",
    "2024-11-01-preview",
    "2025-03-01-preview",
    "2025-05-01-preview",
    "2025-06-01-preview",
    "2025-12-01-preview",
    "2026-09-01-preview",
];

/// api-versions that exist for the registry resource itself but not for `importImage`.
pub const REGISTRY_ONLY_API_VERSIONS: &[&str] = &["2016-06-27-preview", "2017-03-01"];

/// The newest stable api-version (what the Python SDK sends by default).
pub const LATEST_STABLE_API_VERSION: &str = "2025-11-01";

/// Which api-version list an endpoint checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiSurface {
    /// `importImage` and its operation results.
    Import,
    /// The registry resource (PUT/GET/DELETE/list).
    Registry,
}

/// Why an api-version was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiVersionError {
    Missing,
    Unsupported { given: String, supported: String },
}

/// Returns the canonical spelling of a supported api-version.
pub fn check_api_version(
    given: Option<&str>,
    surface: ApiSurface,
) -> Result<&'static str, ApiVersionError> {
    let given = match given {
        Some(g) if !g.trim().is_empty() => g.trim(),
        _ => return Err(ApiVersionError::Missing),
    };
    let mut all: Vec<&'static str> = IMPORT_API_VERSIONS.to_vec();
    if surface == ApiSurface::Registry {
        all.extend_from_slice(REGISTRY_ONLY_API_VERSIONS);
    }
    all.iter()
        .find(|v| v.eq_ignore_ascii_case(given))
        .copied()
        .ok_or_else(|| {
            let mut sorted = all.clone();
            sorted.sort_unstable();
            ApiVersionError::Unsupported {
                given: crate::reference::truncate(given),
                supported: sorted.join(", "),
            }
        })
}

/// What a resource group name is, as the OpenAPI documents declare it: ARM's spec pattern
/// `^[-\w\._\(\)]+$` narrowed to what ARM enforces, no period at the end. `\w` is a letter
/// or a number of any script, or `_` ([`validate_resource_group`] checks it with
/// `char::is_alphanumeric`, the class a JSON Schema tool's regex engine generates from; Rust's
/// regex `\w` would refuse some of them, e.g. `²`).
pub const RESOURCE_GROUP_PATTERN: &str = r"^[-\w\._\(\)]*[-\w_\(\)]$";

fn resource_group_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')')
}

/// A subscription id must be a UUID; returns it lowercased.
pub fn validate_subscription(s: &str) -> Result<String, Invalid> {
    uuid::Uuid::parse_str(s)
        .ok()
        .filter(|_| s.len() == 36)
        .map(|u| u.hyphenated().to_string())
        .ok_or_else(|| {
            Invalid::new(
                "subscriptionId",
                format!(
                    "The provided subscription identifier '{}' is malformed or invalid.",
                    crate::reference::truncate(s)
                ),
            )
        })
}

/// Resource group: 1–90 characters of `[-\w._()]`, not ending in '.'.
pub fn validate_resource_group(s: &str) -> Result<(), Invalid> {
    let ok = !s.is_empty()
        && s.chars().count() <= 90
        && s.chars().all(resource_group_char)
        && !s.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            "resourceGroupName",
            format!(
                "Resource group name '{}' is invalid. It must be 1 to 90 characters of alphanumerics, underscores, parentheses, hyphens and periods, and cannot end in a period.",
                crate::reference::truncate(s)
            ),
        ))
    }
}

/// A region as ARM takes it, a name (`eastus`) or a display name (`East US`): 1 to 64 ASCII
/// letters and digits, spaces anywhere ([`normalize_location`] drops them and lowercases).
pub const LOCATION_PATTERN: &str = "^ *[a-zA-Z0-9](?: *[a-zA-Z0-9]){0,63} *$";

/// The region a `location` names (`East US` → `eastus`), or `None` when it is not one
/// ([`LOCATION_PATTERN`]).
pub fn normalize_location(l: &str) -> Option<String> {
    let n: String = l.chars().filter(|c| *c != ' ').collect();
    ((1..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| n.to_ascii_lowercase())
}

/// Registry name: 5–50 ASCII alphanumerics.
pub fn validate_registry_name(s: &str) -> Result<(), Invalid> {
    let ok = (5..=50).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            "registryName",
            format!(
                "The registry name '{}' is invalid. A registry name may contain only alphanumeric characters and must be between 5 and 50 characters long.",
                crate::reference::truncate(s)
            ),
        ))
    }
}

/// The ARM id of a registry, with the case the user gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryId {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
}

impl RegistryId {
    /// Validates the three path parameters.
    pub fn new(subscription: &str, resource_group: &str, name: &str) -> Result<Self, Invalid> {
        let subscription = validate_subscription(subscription)?;
        validate_resource_group(resource_group)?;
        validate_registry_name(name)?;
        Ok(Self {
            subscription,
            resource_group: resource_group.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Parses `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{n}`
    /// (segment names case-insensitive, a trailing '/' tolerated).
    pub fn parse(id: &str) -> Result<Self, Invalid> {
        let bad = || {
            Invalid::new(
                "source.resourceId",
                format!(
                    "'{}' is not a valid container registry resource id. Expected '/subscriptions/{{subscriptionId}}/resourceGroups/{{resourceGroupName}}/providers/Microsoft.ContainerRegistry/registries/{{registryName}}'.",
                    crate::reference::truncate(id)
                ),
            )
        };
        let parts: Vec<&str> = id.trim_end_matches('/').split('/').collect();
        if parts.len() != 9 || !parts[0].is_empty() {
            return Err(bad());
        }
        let expect = [
            (1, "subscriptions"),
            (3, "resourceGroups"),
            (5, "providers"),
            (6, PROVIDER),
            (7, "registries"),
        ];
        if expect
            .iter()
            .any(|(i, want)| !parts[*i].eq_ignore_ascii_case(want))
        {
            return Err(bad());
        }
        Self::new(parts[2], parts[4], parts[8])
            .map_err(|e| Invalid::new("source.resourceId", e.message))
    }

    /// The registry name as used for uniqueness, login servers and backend paths.
    pub fn name_lower(&self) -> String {
        self.name.to_ascii_lowercase()
    }
}

impl fmt::Display for RegistryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/{PROVIDER}/registries/{}",
            self.subscription, self.resource_group, self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-0000-0000-0000-000000000001";

    #[test]
    fn api_versions() {
        assert_eq!(
            check_api_version(Some("2025-11-01"), ApiSurface::Import),
            Ok("2025-11-01")
        );
        assert_eq!(
            check_api_version(Some("2026-09-01-PREVIEW"), ApiSurface::Import),
            Ok("2026-09-01-preview")
        );
        assert_eq!(
            check_api_version(None, ApiSurface::Import),
            Err(ApiVersionError::Missing)
        );
        assert!(matches!(
            check_api_version(Some("2017-03-01"), ApiSurface::Import),
            Err(ApiVersionError::Unsupported { .. })
        ));
        assert_eq!(
            check_api_version(Some("2017-03-01"), ApiSurface::Registry),
            Ok("2017-03-01")
        );
    }

    #[test]
    fn names() {
        assert!(validate_registry_name("myreg").is_ok());
        assert!(validate_registry_name(&"a".repeat(50)).is_ok());
        for bad in ["abcd", "my-reg", "my_reg", "régistry", &"a".repeat(51), ""] {
            assert!(validate_registry_name(bad).is_err(), "{bad}");
        }
        assert!(validate_resource_group("rg-1_(x).y").is_ok());
        for bad in ["", "rg.", "a/b", "a b", "a\u{301}", &"r".repeat(91)] {
            assert!(validate_resource_group(bad).is_err(), "{bad}");
        }
        // Letters and numbers of any script, as a JSON Schema tool reads `\w`.
        for good in ["grüne", "x²", "组", "(a)", "-", "a.b"] {
            assert!(validate_resource_group(good).is_ok(), "{good}");
        }
        assert_eq!(normalize_location("East US 2").as_deref(), Some("eastus2"));
        for bad in ["", "  ", "east-us", "east\tus", &"a".repeat(65)] {
            assert!(normalize_location(bad).is_none(), "{bad}");
        }
        assert!(validate_subscription(SUB).is_ok());
        for bad in [
            "sub",
            "00000000000000000000000000000001",
            "{00000000-0000-0000-0000-000000000001}",
        ] {
            assert!(validate_subscription(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registry_ids() {
        let id = format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/Source1");
        let r = RegistryId::parse(&id).expect("parse");
        assert_eq!(r.name, "Source1");
        assert_eq!(r.to_string(), id);
        assert!(RegistryId::parse(&id.to_lowercase()).is_ok());
        assert!(RegistryId::parse("/subscriptions/x").is_err());
        assert!(RegistryId::parse(&id.replace("registries", "vaults")).is_err());
    }
}
