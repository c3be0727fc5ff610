//! What to import: the flags or the lines of `--file` turned into `importImage` bodies, each
//! checked with the service's own rules (`ImportSpec::from_params`) before anything is sent.

use acr_core::import::ImportSpec;
use acr_core::reference::truncate;
use acr_core::wire::ImportImageParameters;
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};

/// Where every source of this run lives.
#[derive(Debug, Clone)]
pub enum SourceRegistry {
    /// `--source REGISTRY/REPO…`: the registry part of each source.
    FromSource,
    /// `--source-registry`: an emulated registry, by ARM resource id.
    ResourceId(String),
}

/// Source credentials (`-u`, `-p`).
#[derive(Clone)]
pub struct SourceCredentials {
    pub username: Option<String>,
    pub password: SecretString,
}

impl std::fmt::Debug for SourceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceCredentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// What every import of the run shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub source_registry: SourceRegistry,
    pub credentials: Option<SourceCredentials>,
    pub force: bool,
}

/// One import to submit.
#[derive(Debug, Clone)]
pub struct Job {
    /// What the progress display and the summary call it (the first target).
    pub label: String,
    /// The `--file` line number (1-based) and its text.
    pub line: Option<(usize, String)>,
    /// The body, ready to send.
    pub body: Body,
}

/// The `importImage` body (ImportImageParameters of the 2025-11-01 spec).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Body {
    source: Source,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    target_tags: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    untagged_target_repositories: Vec<String>,
    mode: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Source {
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    registry_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credentials: Option<WireCredentials>,
    source_image: String,
}

#[derive(Clone, Serialize)]
struct WireCredentials {
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(serialize_with = "expose")]
    password: SecretString,
}

impl std::fmt::Debug for WireCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireCredentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

fn expose<S: Serializer>(p: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.expose_secret())
}

impl Body {
    /// The JSON to POST (holds the password in clear: sent, never printed).
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// An input the user has to fix; `where_` says which (`--source`, `line 3`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{where_}: {message}")]
pub struct BadInput {
    pub where_: String,
    pub message: String,
}

impl BadInput {
    fn new(where_: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            where_: where_.into(),
            message: message.into(),
        }
    }
}

/// The import of `--source` with `-t` / `--repository`.
pub fn single(
    common: &Common,
    source: &str,
    tags: &[String],
    repositories: &[String],
) -> Result<Job, BadInput> {
    build(common, source, tags, repositories).map(|(label, body)| Job {
        label,
        line: None,
        body,
    })
}

/// The imports of a `--file`: every bad line is reported (all of them, nothing is sent).
pub fn from_file(common: &Common, text: &str) -> Result<Vec<Job>, Vec<BadInput>> {
    let mut jobs = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let where_ = format!("line {n} ({})", truncate(line));
        let (source, target) = match fields.as_slice() {
            [s] => (*s, None),
            [s, t] => (*s, Some(*t)),
            _ => {
                bad.push(BadInput::new(
                    where_,
                    "expected SOURCE [TARGET], separated by spaces",
                ));
                continue;
            }
        };
        let tags: Vec<String> = target.map(str::to_owned).into_iter().collect();
        match build(common, source, &tags, &[]) {
            Ok((label, body)) => jobs.push(Job {
                label,
                line: Some((n, line.to_owned())),
                body,
            }),
            Err(e) => bad.push(BadInput::new(where_, e.message)),
        }
    }
    if !bad.is_empty() {
        return Err(bad);
    }
    if jobs.is_empty() {
        return Err(vec![BadInput::new(
            "--file",
            "no import in the file (every line is blank or a # comment)",
        )]);
    }
    Ok(jobs)
}

/// A source `[http[s]://]REGISTRY/REPOSITORY[:TAG|@DIGEST]` split as `az acr import` does,
/// at the first '/'. The registry part must look like a host, as docker reads references
/// (a '.' or a ':' in it, or `localhost`): `library/alpine` names no registry.
fn split_source(source: &str) -> Result<(String, String), String> {
    let s = source.trim();
    let lower = s.to_ascii_lowercase();
    let scheme_len = ["https://", "http://"]
        .iter()
        .find(|p| lower.starts_with(*p))
        .map_or(0, |p| p.len());
    let (scheme, rest) = s.split_at(scheme_len);
    let hint = "write REGISTRY/REPOSITORY[:TAG|@DIGEST], e.g. docker.io/library/alpine:3.20 or \
                127.0.0.1:5001/demo/app:v1 (an emulated registry of the service: \
                --source-registry NAME with --source REPOSITORY[:TAG])";
    match rest.split_once('/') {
        Some((registry, image))
            if !registry.is_empty()
                && (registry.contains('.')
                    || registry.contains(':')
                    || registry.eq_ignore_ascii_case("localhost")) =>
        {
            Ok((format!("{scheme}{registry}"), image.to_owned()))
        }
        _ => Err(format!(
            "'{}' names no source registry: {hint}",
            truncate(source)
        )),
    }
}

/// The body for one source and its targets; checked as the service checks it.
fn build(
    common: &Common,
    source: &str,
    tags: &[String],
    repositories: &[String],
) -> Result<(String, Body), BadInput> {
    let bad_source = |m: String| BadInput::new("--source", m);
    let (resource_id, registry_uri, image) = match &common.source_registry {
        SourceRegistry::ResourceId(id) => (Some(id.clone()), None, source.trim().to_owned()),
        SourceRegistry::FromSource => {
            let (registry, image) = split_source(source).map_err(bad_source)?;
            (None, Some(registry), image)
        }
    };
    let mut target_tags = tags.to_vec();
    if target_tags.is_empty() && repositories.is_empty() {
        // az's default: the source image without its digest (the service then takes the
        // source tag, or `latest`).
        let without_digest = image.split('@').next().unwrap_or(&image).to_owned();
        target_tags.push(without_digest);
    }
    let body = Body {
        source: Source {
            resource_id,
            registry_uri,
            credentials: common.credentials.as_ref().map(|c| WireCredentials {
                username: c.username.clone(),
                password: c.password.clone(),
            }),
            source_image: image,
        },
        target_tags,
        untagged_target_repositories: repositories.to_vec(),
        mode: if common.force { "Force" } else { "NoForce" },
    };
    // The service's own validation, on the very body that will be sent.
    let params: ImportImageParameters = serde_json::from_slice(&body.to_json())
        .map_err(|e| BadInput::new("--source", e.to_string()))?;
    let spec = ImportSpec::from_params(&params).map_err(|e| {
        let flag = if e.target.starts_with("targetTags") {
            "-t/--image"
        } else if e.target.starts_with("untaggedTargetRepositories") {
            "--repository"
        } else if e.target.starts_with("source.credentials") {
            "-u/-p"
        } else if e.target.starts_with("source.resourceId") {
            "--source-registry"
        } else {
            "--source"
        };
        BadInput::new(flag, e.message)
    })?;
    let label = spec
        .target_tags
        .first()
        .map(ToString::to_string)
        .or_else(|| spec.untagged_repositories.first().map(ToString::to_string))
        .unwrap_or_else(|| spec.source_image.to_string());
    Ok((label, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common() -> Common {
        Common {
            source_registry: SourceRegistry::FromSource,
            credentials: None,
            force: false,
        }
    }

    fn json(job: &Job) -> serde_json::Value {
        serde_json::from_slice(&job.body.to_json()).expect("json")
    }

    #[test]
    fn a_source_is_split_at_the_first_slash() {
        let job = single(
            &common(),
            "127.0.0.1:5001/demo/app:v1",
            &["app:v1".into()],
            &[],
        )
        .expect("valid");
        assert_eq!(
            json(&job),
            serde_json::json!({"source":{"registryUri":"127.0.0.1:5001","sourceImage":"demo/app:v1"},
                               "targetTags":["app:v1"],"mode":"NoForce"})
        );
        assert_eq!(job.label, "app:v1");
        let job = single(
            &common(),
            "https://localhost/demo/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &[],
            &["untagged".into()],
        )
        .expect("valid");
        let v = json(&job);
        assert_eq!(v["source"]["registryUri"], "https://localhost");
        assert!(v.get("targetTags").is_none(), "{v}");
        assert_eq!(v["untaggedTargetRepositories"][0], "untagged");
        assert_eq!(job.label, "untagged");
    }

    #[test]
    fn the_default_target_is_the_source_image_without_digest() {
        let job = single(&common(), "docker.io/library/alpine:3.20", &[], &[]).expect("valid");
        assert_eq!(json(&job)["targetTags"][0], "library/alpine:3.20");
        let job = single(
            &common(),
            "docker.io/library/alpine@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &[],
            &[],
        )
        .expect("valid");
        assert_eq!(json(&job)["targetTags"][0], "library/alpine");
    }

    #[test]
    fn bad_references_say_which_flag() {
        let e = single(&common(), "library/alpine", &[], &[]).expect_err("refused");
        assert_eq!(e.where_, "--source");
        assert!(e.message.contains("names no source registry"), "{e}");
        let e = single(&common(), "reg.example.com/Bad_Repo", &[], &[]).expect_err("refused");
        assert_eq!(e.where_, "--source");
        let e =
            single(&common(), "reg.example.com/ok:v1", &["x@y".into()], &[]).expect_err("refused");
        assert_eq!(e.where_, "-t/--image", "{e}");
        let e = single(&common(), "reg.example.com:0/ok:v1", &[], &[]).expect_err("refused");
        assert!(e.message.contains("port"), "{e}");
    }

    #[test]
    fn credentials_and_force_go_into_the_body_and_never_into_debug() {
        let c = Common {
            source_registry: SourceRegistry::ResourceId(
                "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/other".into(),
            ),
            credentials: Some(SourceCredentials {
                username: Some("u".into()),
                password: SecretString::from("hunter2-secret".to_owned()),
            }),
            force: true,
        };
        let job = single(&c, "demo/app:v1", &[], &[]).expect("valid");
        let v = json(&job);
        assert_eq!(v["mode"], "Force");
        assert_eq!(v["source"]["credentials"]["password"], "hunter2-secret");
        assert!(v["source"]["resourceId"].is_string());
        assert!(!format!("{job:?}").contains("hunter2"));
    }

    #[test]
    fn file_lines() {
        let text = "# images\n\n127.0.0.1:5001/a:v1 a:v1\n  127.0.0.1:5001/b:v2\t b:v2 \n127.0.0.1:5001/c\n";
        let jobs = from_file(&common(), text).expect("valid");
        assert_eq!(jobs.len(), 3);
        assert_eq!(jobs[1].line.as_ref().map(|l| l.0), Some(4));
        assert_eq!(jobs[2].label, "c:latest");
        let errs =
            from_file(&common(), "a/b c\nreg.io/x y z\nreg.io/ok ok\n").expect_err("refused");
        assert_eq!(errs.len(), 2);
        assert!(errs[0].where_.starts_with("line 1"), "{errs:?}");
        assert!(errs[1].message.contains("SOURCE [TARGET]"), "{errs:?}");
        assert!(from_file(&common(), "# nothing\n").is_err());
    }
}
