//! One import: resolve source and targets, run the copy, say what went wrong in user terms.

use std::sync::Arc;
use std::time::Duration;

use acr_core::arm::RegistryId;
use acr_core::import::ImportSpec;
use acr_core::operation::{FailureKind, ImportFailure};
use acr_core::reference::{Digest, Reference, Repository};
use acr_oci::copy::copy_image;
use acr_oci::{
    CopyError, CopyGate, CopyRequest, CopyTarget, Credentials, OciError, Progress, RegistryClient,
};
use acr_store::{ClaimedOperation, Reservation, ResolvedSource, TagKey};
use futures::future::BoxFuture;
use secrecy::SecretString;

use crate::WorkerCtx;

/// How an attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The operation fails with this error.
    Final(ImportFailure),
    /// Worth another attempt later (the source or target was briefly unavailable).
    Retry {
        delay: Duration,
        reason: String,
        failure: ImportFailure,
    },
    /// This attempt no longer owns the operation: it ends without writing anything more (the
    /// lease lapses or has lapsed, and another attempt takes over).
    Abandoned(String),
}

impl Failure {
    /// The error the operation ends with (`None`: it does not end here).
    pub(crate) fn into_failure(self) -> Option<ImportFailure> {
        match self {
            Failure::Final(f) | Failure::Retry { failure: f, .. } => Some(f),
            Failure::Abandoned(_) => None,
        }
    }
}

fn fail(kind: FailureKind, message: impl Into<String>) -> Failure {
    Failure::Final(ImportFailure::new(kind, message))
}

/// The source side of an import after resolution.
struct Source {
    client: Arc<RegistryClient>,
    repository: Repository,
    /// How the user named the source, for messages (`host/repo` or `registry/repo`).
    display: String,
    /// A registry outside the emulator (the layer size limit applies).
    external: bool,
}

pub(crate) async fn execute(
    ctx: &WorkerCtx,
    op: &ClaimedOperation,
    progress: Arc<Progress>,
) -> Result<(), Failure> {
    let rec = &op.record;
    let acr_store::Work::Import(stored) = &op.work else {
        return Err(fail(FailureKind::Internal, "not an import operation"));
    };
    let spec = ImportSpec::from_stored(stored).map_err(|e| {
        fail(
            FailureKind::Internal,
            format!("the stored request is invalid: {}", e.message),
        )
    })?;
    let target = ctx
        .store
        .get_registry(
            &rec.subscription_id,
            &rec.resource_group,
            &rec.registry_name,
        )
        .await
        .map_err(|e| retry_store(&e))?
        .filter(|r| !r.deleting())
        .ok_or_else(|| {
            fail(
                FailureKind::InvalidParameters,
                format!(
                    "The target registry '{}' no longer exists: it was deleted.",
                    rec.registry_name
                ),
            )
        })?;
    let target_id = target.id();
    let prefix = target.name_lower.clone();

    let source = resolve_source(ctx, op, &spec).await?;

    // Group tags per repository, then add untagged repositories.
    let mut targets: Vec<CopyTarget> = Vec::new();
    let backend_repo = |r: &Repository| {
        r.prefixed(&prefix).map_err(|m| {
            fail(
                FailureKind::InvalidParameters,
                format!("Invalid target repository: {m}"),
            )
        })
    };
    for t in &spec.target_tags {
        let repo = backend_repo(&t.repository)?;
        match targets.iter_mut().find(|x| x.repository == repo) {
            Some(x) => x.tags.push(t.tag.clone()),
            None => targets.push(CopyTarget {
                repository: repo,
                tags: vec![t.tag.clone()],
            }),
        }
    }
    for r in &spec.untagged_repositories {
        let repo = backend_repo(r)?;
        if !targets.iter().any(|x| x.repository == repo) {
            targets.push(CopyTarget {
                repository: repo,
                tags: Vec::new(),
            });
        }
    }

    let reference = match spec.source_image.reference() {
        Reference::Digest(d) => d.to_string(),
        Reference::Tag(t) => t.to_string(),
    };
    let force = spec.mode == acr_core::wire::ImportMode::Force;
    let reserved = if force {
        0
    } else {
        reserve_tags(ctx, op, &targets, &target_id, &prefix).await?
    };
    let gate = Arc::new(OperationGate {
        ctx: ctx.clone(),
        id: rec.id.clone(),
        attempt: op.attempt(),
        reserved,
        progress: progress.clone(),
        registry: prefix.clone(),
        targets: targets.clone(),
    });
    let req = CopyRequest {
        source: source.client.clone(),
        source_repository: source.repository.clone(),
        reference: reference.clone(),
        target: ctx.backend.clone(),
        targets,
        force,
        resumed: op.attempt() > 1,
        concurrency: ctx.config.copy_concurrency,
        max_manifests: ctx.config.max_manifests,
        max_layer_bytes: if source.external {
            ctx.config.max_layer_bytes
        } else {
            None
        },
        progress,
        pinned: pinned_digest(op),
        gate: Some(gate),
        sink: ctx.blob_sink.clone(),
    };
    match copy_image(&req).await {
        Ok(report) => {
            tracing::info!(operation.id = %rec.id, digest = %report.root_digest, manifests = report.manifests.len(), "copied");
            crate::record::record_import(ctx, &prefix, &req.targets, &report)
                .await
                .map_err(|e| retry_store(&e))?;
            Ok(())
        }
        Err(CopyError::Withdrawn(why)) => Err(Failure::Abandoned(why)),
        Err(e) => {
            let f = failure_for(
                &e,
                &rec.id,
                &target_id.to_string(),
                &prefix,
                &source.display,
                &reference,
            );
            let transient = match &e {
                CopyError::Source(o) | CopyError::Target(o) => o.is_transient(),
                _ => false,
            };
            if transient {
                let delay = match &e {
                    CopyError::Source(OciError::TooManyRequests {
                        retry_after: Some(d),
                        ..
                    }) => *d,
                    _ => Duration::from_secs(2u64.pow((op.attempt().clamp(1, 5)) as u32)),
                };
                Err(Failure::Retry {
                    delay: delay.min(Duration::from_secs(120)),
                    reason: acr_core::error_chain(&e),
                    failure: f,
                })
            } else {
                Err(Failure::Final(f))
            }
        }
    }
}

/// The source digest an earlier attempt resolved and recorded (see [`OperationGate::resolved`]).
fn pinned_digest(op: &ClaimedOperation) -> Option<Digest> {
    let progress = op.record.progress.as_ref()?;
    let digest = progress.0.get("sourceDigest")?.as_str()?;
    Digest::parse(digest).ok()
}

/// Reserves the target tags of a NoForce import in the store (all or none) before they are
/// checked, so that among concurrent imports of one tag exactly one writes it. Returns how
/// many tags are reserved.
async fn reserve_tags(
    ctx: &WorkerCtx,
    op: &ClaimedOperation,
    targets: &[CopyTarget],
    target_id: &RegistryId,
    prefix: &str,
) -> Result<usize, Failure> {
    let tags: Vec<TagKey> = targets
        .iter()
        .flat_map(|t| {
            t.tags.iter().map(|tag| TagKey {
                repository: t.repository.as_str().to_owned(),
                tag: tag.as_str().to_owned(),
            })
        })
        .collect();
    if tags.is_empty() {
        return Ok(0);
    }
    let id = &op.record.id;
    let (owned_id, attempt, wanted) = (id.clone(), op.attempt(), tags.clone());
    match ctx
        .store
        .transact(|s| async move { s.reserve_tags(&owned_id, attempt, &wanted).await })
        .await
        .map_err(|e| retry_store(&e))?
    {
        Reservation::Reserved => Ok(acr_store::reservations::normalized(&tags).len()),
        Reservation::Lost => Err(Failure::Abandoned(
            "another attempt owns the operation".into(),
        )),
        Reservation::Held { tag, operation_id } => {
            tracing::info!(operation.id = %id, repository = %tag.repository, tag = %tag.tag, held_by = %operation_id, "NoForce: the tag is being written by another import");
            let repo =
                Repository::parse(&tag.repository).map_err(|m| fail(FailureKind::Internal, m))?;
            let tag = acr_core::reference::Tag::parse(&tag.tag)
                .map_err(|m| fail(FailureKind::Internal, m))?;
            // The same answer as a tag found in the registry (the source is not read).
            let conflict = CopyError::TagExists {
                repository: repo,
                tag,
            };
            Err(Failure::Final(failure_for(
                &conflict,
                id,
                &target_id.to_string(),
                prefix,
                "",
                "",
            )))
        }
    }
}

/// The store's side of a copy: records the resolved source digest at once (a re-run copies
/// the same digest) and, for a NoForce import, confirms the tag reservations right before the
/// tags are written.
struct OperationGate {
    ctx: WorkerCtx,
    id: String,
    attempt: i32,
    /// Tags reserved by this attempt (0: nothing to confirm).
    reserved: usize,
    progress: Arc<Progress>,
    /// The target registry (lowercase) and what the copy writes there.
    registry: String,
    targets: Vec<CopyTarget>,
}

impl OperationGate {
    /// Refuses a copy that would move a locked tag or write into a locked repository
    /// (`changeableAttributes.writeEnabled: false`, as ACR enforces it for imports too).
    async fn check_locks(&self, digest: Option<&Digest>) -> Result<(), CopyError> {
        let prefix = format!("{}/", self.registry);
        for t in &self.targets {
            let inner = t
                .repository
                .as_str()
                .strip_prefix(&prefix)
                .unwrap_or(t.repository.as_str());
            let locks = self
                .ctx
                .store
                .locks(&self.registry, inner, None, None)
                .await
                .map_err(|e| CopyError::Withdrawn(format!("the locks could not be read: {e}")))?;
            if locks.repository.is_some_and(|a| !a.write_enabled) {
                return Err(CopyError::Locked {
                    repository: t.repository.clone(),
                    tag: None,
                });
            }
            for tag in &t.tags {
                let locks = self
                    .ctx
                    .store
                    .locks(&self.registry, inner, Some(tag.as_str()), None)
                    .await
                    .map_err(|e| {
                        CopyError::Withdrawn(format!("the locks could not be read: {e}"))
                    })?;
                if let Some((attrs, current)) = &locks.tag {
                    let moves = digest.is_none_or(|d| d.to_string() != *current);
                    if !attrs.write_enabled && moves {
                        return Err(CopyError::Locked {
                            repository: t.repository.clone(),
                            tag: Some(tag.clone()),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for OperationGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationGate")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .field("reserved", &self.reserved)
            .finish()
    }
}

impl CopyGate for OperationGate {
    fn resolved<'a>(&'a self, digest: &'a Digest) -> BoxFuture<'a, Result<(), CopyError>> {
        Box::pin(async move {
            self.check_locks(Some(digest)).await?;
            let snapshot = serde_json::to_value(self.progress.snapshot()).ok();
            match self
                .ctx
                .store
                .heartbeat(
                    &self.id,
                    self.attempt,
                    self.ctx.config.lease,
                    snapshot.as_ref(),
                    self.progress.percent(),
                )
                .await
            {
                Ok(true) => Ok(()),
                Ok(false) => Err(CopyError::Withdrawn(
                    "another attempt owns the operation".into(),
                )),
                // The heartbeat task records it later; a re-run before that resolves again.
                Err(e) => {
                    tracing::warn!(operation.id = %self.id, error = %acr_core::error_chain(&e), "could not record the source digest");
                    Ok(())
                }
            }
        })
    }

    fn before_tags(&self) -> BoxFuture<'_, Result<(), CopyError>> {
        Box::pin(async move {
            let digest = self.progress.source_digest.get().cloned();
            self.check_locks(digest.as_ref()).await?;
            if self.reserved == 0 {
                return Ok(());
            }
            match self
                .ctx
                .store
                .confirm_tags(&self.id, self.attempt, self.ctx.config.lease, self.reserved)
                .await
            {
                Ok(true) => Ok(()),
                Ok(false) => Err(CopyError::Withdrawn(
                    "the attempt lost its lease and with it the tag reservations".into(),
                )),
                Err(e) => Err(CopyError::Withdrawn(format!(
                    "the tag reservations could not be confirmed: {e}"
                ))),
            }
        })
    }
}

fn retry_store(e: &acr_store::StoreError) -> Failure {
    Failure::Retry {
        delay: Duration::from_secs(2),
        reason: acr_core::error_chain(e),
        failure: ImportFailure::new(
            FailureKind::Internal,
            "The service could not read its database.",
        ),
    }
}

async fn resolve_source(
    ctx: &WorkerCtx,
    op: &ClaimedOperation,
    spec: &ImportSpec,
) -> Result<Source, Failure> {
    let emulated = |name_lower: &str| -> Result<Source, Failure> {
        let repository = spec
            .source_image
            .repository
            .prefixed(name_lower)
            .map_err(|m| {
                fail(
                    FailureKind::InvalidParameters,
                    format!("Invalid source image: {m}"),
                )
            })?;
        Ok(Source {
            client: ctx.backend_source.clone(),
            repository,
            display: format!(
                "{name_lower}.{}/{}",
                ctx.config.login_server_suffix, spec.source_image.repository
            ),
            external: false,
        })
    };
    let resolved = ctx
        .store
        .resolve_source(&spec.source, &ctx.config.login_server_suffix)
        .await
        .map_err(|e| retry_store(&e))?;
    match resolved {
        ResolvedSource::Missing(id) => Err(fail(
            FailureKind::SourceImageNotFound,
            format!(
                "The Resource 'Microsoft.ContainerRegistry/registries/{}' under resource group '{}' was not found.",
                id.name, id.resource_group
            ),
        )),
        ResolvedSource::Deleted(addr) => Err(fail(
            FailureKind::SourceImageNotFound,
            format!(
                "The source registry '{}' was not found: it was deleted.",
                addr.authority()
            ),
        )),
        ResolvedSource::Emulated {
            record,
            by_resource_id: true,
        } => emulated(&record.name_lower),
        ResolvedSource::Emulated {
            record: found,
            by_resource_id: false,
        } => {
            // Explicit credentials are checked as the login server would check them (a wrong
            // password fails the import, nothing copied); without them the caller's identity,
            // checked when the import was accepted, reads it.
            if let Some(e) = &op.credentials_error {
                return Err(fail(
                    FailureKind::Internal,
                    format!("Operation {} failed: {e}.", op.record.id),
                ));
            }
            if let Some(c) = &op.credentials {
                let allowed = match &ctx.source_auth {
                    Some(auth) => {
                        auth.may_pull(&found, c.username.as_deref(), &c.password)
                            .await
                    }
                    None => false,
                };
                if !allowed {
                    return Err(fail(
                        FailureKind::SourceUnauthorized,
                        format!(
                            "Access to the source registry {}.{} was denied for {}: authentication required: the credentials were refused. Check source.credentials.",
                            found.name_lower,
                            ctx.config.login_server_suffix,
                            spec.source_image
                        ),
                    ));
                }
            }
            emulated(&found.name_lower)
        }
        ResolvedSource::External(addr) => {
            let url = ctx
                .config
                .client
                .registry_url(&addr)
                .map_err(|e| fail(FailureKind::InvalidParameters, e.to_string()))?;
            if let Err(r) = ctx.config.client.check_source_url(&url) {
                return Err(fail(
                    FailureKind::InvalidParameters,
                    format!(
                        "The source registry '{}' cannot be imported from: {r}.",
                        addr.authority()
                    ),
                ));
            }
            if let Some(e) = &op.credentials_error {
                return Err(fail(
                    FailureKind::Internal,
                    format!("Operation {} failed: {e}.", op.record.id),
                ));
            }
            let credentials = match &op.credentials {
                None => Credentials::Anonymous,
                Some(c) => match &c.username {
                    Some(u) => Credentials::Basic {
                        username: u.clone(),
                        password: SecretString::from(c.password.clone()),
                    },
                    None => Credentials::Token(SecretString::from(c.password.clone())),
                },
            };
            let client = ctx.sources.get(
                &ctx.http,
                url,
                credentials,
                &ctx.config.client,
                &ctx.limits,
            );
            Ok(Source {
                client,
                repository: spec.source_image.repository.clone(),
                display: format!("{}/{}", addr.authority(), spec.source_image.repository),
                external: true,
            })
        }
    }
}

/// Turns a copy error into the ARM error a user reads.
pub fn failure_for(
    e: &CopyError,
    op_id: &str,
    target_id: &str,
    prefix: &str,
    source: &str,
    reference: &str,
) -> ImportFailure {
    let unprefix = |r: &Repository| {
        r.as_str()
            .strip_prefix(&format!("{prefix}/"))
            .unwrap_or(r.as_str())
            .to_owned()
    };
    let sep = if reference.contains(':') { "@" } else { ":" };
    let image = format!("{source}{sep}{reference}");
    match e {
        CopyError::TagExists { repository, tag } => {
            let t = format!("{}:{tag}", unprefix(repository));
            ImportFailure::new(
                FailureKind::TagConflict,
                format!("Operation {op_id} failed. Resource {target_id} {t} Tag {t} already exists in target registry."),
            )
        }
        CopyError::TooManyManifests { count, limit } => ImportFailure::new(
            FailureKind::InvalidParameters,
            format!("The image {image} has {count} manifests; an imported image may have at most {limit}."),
        ),
        CopyError::Unsupported(m) => ImportFailure::new(FailureKind::InvalidParameters, m.clone()),
        CopyError::LayerTooLarge {
            digest,
            size,
            limit,
        } => ImportFailure::new(
            FailureKind::InvalidParameters,
            format!(
                "The image {image} has a layer of {size} bytes ({digest}); layers imported from a registryUri source may be at most {limit} bytes."
            ),
        ),
        CopyError::Source(o) => match o {
            OciError::NotFound { what, code, .. } if what.starts_with("manifest") => ImportFailure::new(
                FailureKind::SourceImageNotFound,
                format!("The source image {image} was not found in the source registry ({code})."),
            ),
            OciError::NotFound { what, code, registry } => ImportFailure::new(
                FailureKind::SourceRegistryError,
                format!("The source registry {registry} is missing {what} referenced by {image} ({code})."),
            ),
            OciError::Unauthorized { registry, detail } => ImportFailure::new(
                FailureKind::SourceUnauthorized,
                format!("Access to the source registry {registry} was denied for {image}: {detail}. Check source.credentials."),
            ),
            OciError::TooManyRequests { registry, retry_after, detail } => ImportFailure::new(
                FailureKind::SourceRegistryError,
                format!(
                    "The source registry {registry} answered 429 Too Many Requests (TOOMANYREQUESTS){}{}.",
                    retry_after.map(|d| format!("; it asked to retry after {} seconds", d.as_secs())).unwrap_or_default(),
                    if detail.is_empty() { String::new() } else { format!(": {detail}") }
                ),
            ),
            OciError::DigestMismatch { .. } | OciError::SizeMismatch { .. } => ImportFailure::new(
                FailureKind::SourceRegistryError,
                format!("The source registry sent content for {image} that does not match its digest: {o}. Nothing was tagged."),
            ),
            OciError::ManifestTooLarge { .. } => ImportFailure::new(FailureKind::InvalidParameters, format!("{o}.")),
            OciError::Refused { registry, detail } => ImportFailure::new(
                FailureKind::SourceRegistryError,
                format!("The import of {image} from the source registry {registry} was stopped by the network policy: {detail}."),
            ),
            OciError::Network { registry, detail } => ImportFailure::new(
                FailureKind::SourceRegistryError,
                format!("Could not read {image} from the source registry {registry}: {detail}."),
            ),
            other => ImportFailure::new(
                FailureKind::SourceRegistryError,
                format!("The source registry failed while reading {image}: {other}."),
            ),
        },
        CopyError::Target(o) => ImportFailure::new(
            FailureKind::TargetRegistryError,
            format!("Writing to the target registry failed: {o}."),
        ),
        CopyError::Locked { repository, tag } => {
            let what = match tag {
                Some(t) => format!("Tag {}:{t}", unprefix(repository)),
                None => format!("Repository {}", unprefix(repository)),
            };
            ImportFailure::new(
                FailureKind::TagConflict,
                format!("Operation {op_id} failed. Resource {target_id} {what} is locked (changeableAttributes.writeEnabled is false) in target registry; the import would move it."),
            )
        }
        CopyError::Withdrawn(why) => ImportFailure::new(
            FailureKind::Internal,
            format!("Operation {op_id} was interrupted: {why}."),
        ),
    }
}
