//! A validated import request: what the API accepts and the worker executes.

use serde::{Deserialize, Serialize};

use crate::arm::RegistryId;
use crate::reference::{ImageRef, Repository, Tag, TargetTag};
use crate::wire::{ImportImageParameters, ImportMode};
use crate::Invalid;

/// Longest `source.credentials.username` accepted, in characters (JSON Schema's `maxLength`).
pub const MAX_USERNAME_CHARS: usize = 1024;
/// Longest `source.credentials.password` (or token) accepted, in characters.
pub const MAX_PASSWORD_CHARS: usize = 16 * 1024;

/// At most this many entries in `targetTags` and in `untaggedTargetRepositories`.
pub const MAX_TARGETS: usize = 100;

/// Where the source image lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceLocation {
    /// An emulated registry, by ARM resource id.
    Registry(RegistryId),
    /// An external registry (or an emulated one, matched by login server later).
    Address(RegistryAddress),
}

/// `[http://|https://]host[:port][/]` of a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAddress {
    /// `Some(true)` for an explicit `https://`, `Some(false)` for `http://`.
    pub https: Option<bool>,
    /// Lowercased host name or IP literal (IPv6 in brackets).
    pub host: String,
    pub port: Option<u16>,
}

impl RegistryAddress {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let bad = |why: &str| {
            Invalid::new(
                "source.registryUri",
                format!(
                    "'{}' is not a valid registry address: {why}. Expected a login server such as 'myregistry.azurecr.io' or 'registry.example.com:5000'.",
                    crate::reference::truncate(s)
                ),
            )
        };
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        let (https, rest) = if lower.starts_with("https://") {
            (Some(true), &t[8..])
        } else if lower.starts_with("http://") {
            (Some(false), &t[7..])
        } else {
            (None, t)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err(bad("it is empty"));
        }
        if rest.contains('/') || rest.contains('@') || rest.contains('?') || rest.contains('#') {
            return Err(bad(
                "it must be a host and optional port, without a path or user",
            ));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (inside, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address must be closed with ']'"))?;
            if inside.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("the IPv6 address is malformed"));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("unexpected text after the IPv6 address"))?,
                ),
            };
            (format!("[{inside}]"), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
            ),
        };
        if !host.starts_with('[') && !valid_dns_name(&host) {
            return Err(bad("the host name is malformed"));
        }
        Ok(Self {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// `host[:port]` as used in URLs and token scopes.
    pub fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// The registry name when this is the login server `<name>.<suffix>` of an emulated
    /// registry (no port; the host is lowercase, and `login_server_suffix` must be too, without
    /// a leading dot: the configuration normalises it once).
    pub fn emulated_name(&self, login_server_suffix: &str) -> Option<&str> {
        if self.port.is_some() {
            return None;
        }
        let suffix = format!(".{login_server_suffix}");
        self.host.strip_suffix(&suffix).filter(|n| !n.is_empty())
    }

    /// Docker Hub's names map to its registry API host.
    pub fn is_docker_hub(&self) -> bool {
        matches!(
            self.host.as_str(),
            "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
        )
    }
}

/// A checked import request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSpec {
    pub source: SourceLocation,
    pub source_image: ImageRef,
    pub target_tags: Vec<TargetTag>,
    pub untagged_repositories: Vec<Repository>,
    pub mode: ImportMode,
}

impl ImportSpec {
    /// Validates the body of an importImage request (everything but the credentials' secrecy).
    pub fn from_params(p: &ImportImageParameters) -> Result<Self, Invalid> {
        let source =
            match (&p.source.resource_id, &p.source.registry_uri) {
                (Some(id), None) => SourceLocation::Registry(RegistryId::parse(id)?),
                (None, Some(uri)) => SourceLocation::Address(RegistryAddress::parse(uri)?),
                (Some(_), Some(_)) => return Err(Invalid::new(
                    "source",
                    "Only one of 'source.resourceId' and 'source.registryUri' may be specified.",
                )),
                (None, None) => {
                    return Err(Invalid::new(
                        "source",
                        "One of 'source.resourceId' or 'source.registryUri' must be specified.",
                    ))
                }
            };
        let mut source_image = ImageRef::parse(&p.source.source_image).map_err(|m| {
            Invalid::new("source.sourceImage", format!("Invalid source image: {m}"))
        })?;
        if let SourceLocation::Address(addr) = &source {
            if addr.is_docker_hub() && !source_image.repository.as_str().contains('/') {
                source_image.repository = source_image
                    .repository
                    .prefixed("library")
                    .map_err(|m| Invalid::new("source.sourceImage", m))?;
            }
        }
        if let Some(c) = &p.source.credentials {
            use secrecy::ExposeSecret;
            if c.password.expose_secret().is_empty() {
                return Err(Invalid::new(
                    "source.credentials.password",
                    "'source.credentials.password' is required when credentials are given.",
                ));
            }
            // Room for any registry token (JWTs run to a few kB), not for abuse.
            let username_len = c.username.as_deref().map_or(0, |u| u.chars().count());
            if username_len > MAX_USERNAME_CHARS {
                return Err(Invalid::new(
                    "source.credentials.username",
                    format!("'source.credentials.username' is {username_len} characters long; at most {MAX_USERNAME_CHARS} are allowed."),
                ));
            }
            // NUL is no part of any credential, and PostgreSQL's jsonb refuses it.
            let username = c.username.as_deref().unwrap_or_default();
            if username.contains('\0') || c.password.expose_secret().contains('\0') {
                return Err(Invalid::new(
                    "source.credentials",
                    "'source.credentials' may not contain NUL characters.",
                ));
            }
            let password_len = c.password.expose_secret().chars().count();
            if password_len > MAX_PASSWORD_CHARS {
                return Err(Invalid::new(
                    "source.credentials.password",
                    format!("'source.credentials.password' is {password_len} characters long; at most {MAX_PASSWORD_CHARS} are allowed."),
                ));
            }
        }

        let default_tag = source_image.tag.clone().unwrap_or_else(Tag::latest);
        let tags_in = p.target_tags.clone().unwrap_or_default();
        let untagged_in = p.untagged_target_repositories.clone().unwrap_or_default();
        for (name, list) in [
            ("targetTags", &tags_in),
            ("untaggedTargetRepositories", &untagged_in),
        ] {
            if list.len() > MAX_TARGETS {
                return Err(Invalid::new(
                    name,
                    format!(
                        "'{name}' has {} entries; at most {MAX_TARGETS} are allowed.",
                        list.len()
                    ),
                ));
            }
        }
        let mut target_tags: Vec<TargetTag> = Vec::new();
        for (i, t) in tags_in.iter().enumerate() {
            let tt = TargetTag::parse(t, &default_tag).map_err(|m| {
                Invalid::new(
                    format!("targetTags[{i}]"),
                    format!("Invalid target tag: {m}"),
                )
            })?;
            if !target_tags.contains(&tt) {
                target_tags.push(tt);
            }
        }
        let mut untagged_repositories: Vec<Repository> = Vec::new();
        for (i, r) in untagged_in.iter().enumerate() {
            let repo = Repository::parse(r).map_err(|m| {
                Invalid::new(
                    format!("untaggedTargetRepositories[{i}]"),
                    format!("Invalid target repository: {m}"),
                )
            })?;
            if !untagged_repositories.contains(&repo) {
                untagged_repositories.push(repo);
            }
        }
        if target_tags.is_empty() && untagged_repositories.is_empty() {
            // What `az acr import` sends when no -t is given: the source image without its digest.
            target_tags.push(TargetTag {
                repository: source_image.repository.clone(),
                tag: default_tag,
            });
        }
        Ok(Self {
            source,
            source_image,
            target_tags,
            untagged_repositories,
            mode: p.mode.unwrap_or_default(),
        })
    }

    /// The request as stored with the operation (no credentials).
    pub fn to_stored(&self) -> StoredImport {
        let (resource_id, registry_uri) = match &self.source {
            SourceLocation::Registry(id) => (Some(id.to_string()), None),
            SourceLocation::Address(a) => {
                let scheme = match a.https {
                    Some(true) => "https://",
                    Some(false) => "http://",
                    None => "",
                };
                (None, Some(format!("{scheme}{}", a.authority())))
            }
        };
        StoredImport {
            resource_id,
            registry_uri,
            source_image: self.source_image.to_string(),
            target_tags: self.target_tags.iter().map(ToString::to_string).collect(),
            untagged_target_repositories: self
                .untagged_repositories
                .iter()
                .map(ToString::to_string)
                .collect(),
            force: self.mode == ImportMode::Force,
        }
    }

    /// Reads back what [`ImportSpec::to_stored`] wrote.
    pub fn from_stored(s: &StoredImport) -> Result<Self, Invalid> {
        let source = match (&s.resource_id, &s.registry_uri) {
            (Some(id), _) => SourceLocation::Registry(RegistryId::parse(id)?),
            (None, Some(uri)) => SourceLocation::Address(RegistryAddress::parse(uri)?),
            (None, None) => return Err(Invalid::new("source", "stored import has no source")),
        };
        let source_image =
            ImageRef::parse(&s.source_image).map_err(|m| Invalid::new("source.sourceImage", m))?;
        let latest = Tag::latest();
        let target_tags = s
            .target_tags
            .iter()
            .map(|t| TargetTag::parse(t, &latest).map_err(|m| Invalid::new("targetTags", m)))
            .collect::<Result<_, _>>()?;
        let untagged_repositories = s
            .untagged_target_repositories
            .iter()
            .map(|r| {
                Repository::parse(r).map_err(|m| Invalid::new("untaggedTargetRepositories", m))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            source,
            source_image,
            target_tags,
            untagged_repositories,
            mode: if s.force {
                ImportMode::Force
            } else {
                ImportMode::NoForce
            },
        })
    }
}

/// The persisted, credential-free form of an import request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredImport {
    pub resource_id: Option<String>,
    pub registry_uri: Option<String>,
    pub source_image: String,
    pub target_tags: Vec<String>,
    pub untagged_target_repositories: Vec<String>,
    pub force: bool,
}

/// A DNS name (or IPv4 literal): dot-separated labels of letters, digits and inner `-`, each
/// at most 63 characters, 253 in all.
pub fn valid_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: serde_json::Value) -> Result<ImportSpec, Invalid> {
        let p: ImportImageParameters = serde_json::from_value(v).expect("deserialize");
        ImportSpec::from_params(&p)
    }

    #[test]
    fn defaults_follow_the_cli() {
        let s = params(
            serde_json::json!({"source":{"registryUri":"127.0.0.1:5000","sourceImage":"a/b:v1"}}),
        )
        .expect("valid");
        assert_eq!(s.target_tags.len(), 1);
        assert_eq!(s.target_tags[0].to_string(), "a/b:v1");
        assert_eq!(s.mode, ImportMode::NoForce);
        let s = params(serde_json::json!({"source":{"registryUri":"docker.io","sourceImage":"nginx"},"targetTags":["x"]}))
            .expect("valid");
        assert_eq!(s.source_image.repository.as_str(), "library/nginx");
        assert_eq!(s.target_tags[0].to_string(), "x:latest");
    }

    #[test]
    fn rejects_bad_sources() {
        assert!(params(serde_json::json!({"source":{"sourceImage":"a"}})).is_err());
        assert!(params(
            serde_json::json!({"source":{"registryUri":"a.io","resourceId":"/x","sourceImage":"a"}})
        )
        .is_err());
        for uri in [
            "",
            "a b",
            "http://",
            "x.io/path",
            "u@x.io",
            "x.io:0",
            "x.io:99999",
            "[::1",
            "-x.io",
        ] {
            assert!(
                params(serde_json::json!({"source":{"registryUri":uri,"sourceImage":"a"}}))
                    .is_err(),
                "{uri}"
            );
        }
        let err = params(serde_json::json!({"source":{"registryUri":"x.io","sourceImage":"a","credentials":{"password":""}}}))
            .expect_err("empty password");
        assert_eq!(err.target, "source.credentials.password");
    }

    #[test]
    fn addresses() {
        let a = RegistryAddress::parse("HTTPS://Example.COM:5000/").expect("valid");
        assert_eq!(
            (a.https, a.authority()),
            (Some(true), "example.com:5000".to_owned())
        );
        let a = RegistryAddress::parse("[::1]:5000").expect("valid");
        assert_eq!(a.authority(), "[::1]:5000");
        let a = RegistryAddress::parse("MyReg.AzureCR.io").expect("valid");
        assert_eq!(a.emulated_name("azurecr.io"), Some("myreg"));
        assert_eq!(a.emulated_name("example.com"), None);
        let a = RegistryAddress::parse("myreg.azurecr.io:443").expect("valid");
        assert_eq!(
            a.emulated_name("azurecr.io"),
            None,
            "a port means another registry"
        );
    }

    #[test]
    fn stored_round_trip() {
        let s = params(serde_json::json!({"source":{"registryUri":"http://127.0.0.1:5000","sourceImage":"a/b:v1"},
            "targetTags":["c:d","c:d"],"untaggedTargetRepositories":["e"],"mode":"force"}))
        .expect("valid");
        assert_eq!(s.target_tags.len(), 1, "duplicates removed");
        let back = ImportSpec::from_stored(&s.to_stored()).expect("round trip");
        assert_eq!(back, s);
    }
}
