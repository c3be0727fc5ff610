//! ACR's retention policy (`properties.policies.retentionPolicy` of a Premium registry):
//! untagged manifests older than `days` are deleted by a periodic sweep.
//!
//! What is deleted, per repository: a manifest no tag points at, last updated (created,
//! tagged, or untagged) at least `days` ago, whose `deleteEnabled` is not false — minus, until
//! nothing changes, every child of an index that is kept, every referrer whose subject is
//! kept (or unknown), and every subject of a referrer that is kept (so no referrer is left
//! dangling). Parents go before their children, so an interrupted sweep never leaves a
//! kept manifest pointing at a deleted one. Each delete re-reads the manifest right before it
//! (still untagged, still old, still unlocked) and takes the data plane's own path
//! ([`crate::record::delete_by_digest`]: locks, the backend's `DELETE`, the metadata), so the
//! metadata and the backend stay consistent whatever the backend; the content is then freed by
//! the registry's garbage collection. A registry with a queued or running import is left for
//! the next sweep: an import may be about to tag a manifest it found already there.

use std::collections::{BTreeMap, BTreeSet};

use acr_core::reference::Repository;
use acr_core::wire::SkuName;
use acr_oci::client::Scopes;
use acr_store::{RegistryRecord, RetentionRow, StoreError};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use crate::request::Repo;
use crate::{FrontDoor, Inner};

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Registries whose policy is enabled.
    pub registries: usize,
    /// Of those, left for the next sweep (an import into them was unfinished).
    pub postponed: usize,
    /// Manifests deleted.
    pub deleted: usize,
    /// Manifests that were due but kept: locked, tagged or updated meanwhile, or whose delete
    /// failed (said in the log).
    pub kept: usize,
}

/// The parts of a manifest that tie it to others.
#[derive(Debug, Default, Deserialize)]
struct Links {
    #[serde(default)]
    manifests: Vec<Link>,
    #[serde(default)]
    subject: Option<Link>,
}

#[derive(Debug, Deserialize)]
struct Link {
    digest: String,
}

/// Whether a manifest with this media type lists children.
fn is_index(media_type: &str) -> bool {
    media_type.contains("index") || media_type.contains("manifest.list")
}

impl FrontDoor {
    /// One retention sweep over every registry whose policy is enabled. `None` when another
    /// process's sweep holds the lock (PostgreSQL).
    pub async fn retention_sweep(&self) -> Result<Option<SweepReport>, StoreError> {
        self.retention_sweep_at(Utc::now()).await
    }

    /// [`retention_sweep`](Self::retention_sweep) as if it were `now`.
    pub async fn retention_sweep_at(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<SweepReport>, StoreError> {
        let store = &self.inner.store;
        let Some(lock) = store.try_sweep_lock().await? else {
            return Ok(None);
        };
        let result = sweep_all(&self.inner, now).await;
        lock.release().await;
        result.map(Some)
    }
}

/// The registry's retention period while its policy applies (Premium, enabled, not being
/// deleted).
fn retention_days(r: &RegistryRecord) -> Option<i64> {
    let policy = &r.props().policies.retention_policy;
    (policy.enabled() && !r.deleting() && SkuName::parse(&r.sku) == Some(SkuName::Premium))
        .then_some(i64::from(policy.days))
}

async fn sweep_all(inner: &Inner, now: DateTime<Utc>) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    for sub in inner.store.registry_subscriptions().await? {
        for r in inner.store.list_registries(&sub, None).await? {
            let Some(days) = retention_days(&r) else {
                continue;
            };
            report.registries += 1;
            if inner.store.unfinished_imports_into(&r.name).await? > 0 {
                report.postponed += 1;
                continue;
            }
            sweep_registry(
                inner,
                &r.name_lower,
                now - Duration::days(days),
                &mut report,
            )
            .await?;
        }
    }
    Ok(report)
}

/// Deletes the due manifests of registry `name` (lowercase) last updated at or before `cutoff`.
async fn sweep_registry(
    inner: &Inner,
    name: &str,
    cutoff: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<(), StoreError> {
    let mut by_repo: BTreeMap<String, Vec<RetentionRow>> = BTreeMap::new();
    for row in inner.store.retention_manifests(name).await? {
        by_repo.entry(row.repository.clone()).or_default().push(row);
    }
    for (repository, rows) in by_repo {
        // The policy may have changed (or the registry gone) since the sweep began.
        let Some(record) = inner.store.get_registry_by_name(name).await? else {
            return Ok(());
        };
        if retention_days(&record).is_none() {
            return Ok(());
        }
        let repo = Repo {
            registry: record.name_lower.clone(),
            inner: repository.clone(),
            visible: repository.clone(),
        };
        let order = due_in_order(inner, &repo, &rows, cutoff).await;
        for digest in order {
            match delete_if_still_due(inner, &record, &repo, &digest, cutoff).await {
                Ok(true) => report.deleted += 1,
                Ok(false) => report.kept += 1,
                Err(e) => {
                    report.kept += 1;
                    tracing::warn!(
                        registry = %record.name,
                        repository = %repository,
                        digest = %digest,
                        error = %e.message,
                        "retention: deleting an untagged manifest failed; the next sweep tries again"
                    );
                }
            }
        }
    }
    Ok(())
}

/// The digests of `rows` (one repository) the policy deletes, parents before children.
async fn due_in_order(
    inner: &Inner,
    repo: &Repo,
    rows: &[RetentionRow],
    cutoff: DateTime<Utc>,
) -> Vec<String> {
    let mut due: BTreeSet<String> = rows
        .iter()
        .filter(|r| !r.tagged && r.delete_enabled && r.updated_at <= cutoff)
        .map(|r| r.digest.clone())
        .collect();
    if due.is_empty() {
        return Vec::new();
    }
    // What each manifest points at: children (the metadata's, or read from the backend for a
    // due manifest and for a kept index the metadata has none for) and a referrer's subject.
    let mut children: BTreeMap<String, BTreeSet<String>> = rows
        .iter()
        .map(|r| {
            let kids = r
                .refs
                .as_ref()
                .map(|refs| refs.0.iter().map(|c| c.digest.clone()).collect())
                .unwrap_or_default();
            (r.digest.clone(), kids)
        })
        .collect();
    let mut subject: BTreeMap<String, String> = BTreeMap::new();
    // What the metadata alone keeps (children of kept indexes) is not read from the backend.
    keep_closure(&mut due, &children, &subject);
    let full = Repository::parse(&repo.full()).ok();
    // Every manifest is read: a kept one may be a referrer whose subject is due (a kept
    // referrer keeps its subject, or it would be left dangling).
    for r in rows {
        match read_links(inner, full.as_ref(), &r.digest).await {
            Some(links) => {
                children
                    .entry(r.digest.clone())
                    .or_default()
                    .extend(links.manifests.into_iter().map(|l| l.digest));
                if let Some(s) = links.subject {
                    subject.insert(r.digest.clone(), s.digest);
                }
            }
            // Unreadable: what it points at is unknown, so it is kept, and when it is an
            // index or a kept manifest (which may be a referrer of a due one) every manifest
            // of the repository with it (the conservative answer).
            None => {
                if is_index(&r.media_type) || !due.contains(&r.digest) {
                    return Vec::new();
                }
                due.remove(&r.digest);
            }
        }
    }
    keep_closure(&mut due, &children, &subject);
    // Parents first: a manifest goes once no due manifest left points at it.
    let points_at = |d: &str| -> Vec<String> {
        let mut out: Vec<String> = children
            .get(d)
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default();
        out.extend(subject.get(d).cloned());
        out
    };
    let mut order = Vec::with_capacity(due.len());
    while !due.is_empty() {
        let pointed: BTreeSet<String> = due
            .iter()
            .flat_map(|d| points_at(d))
            .filter(|t| due.contains(t))
            .collect();
        let ready: Vec<String> = due
            .iter()
            .filter(|d| !pointed.contains(*d))
            .cloned()
            .collect();
        // Content addressing makes cycles impossible; should one appear, the rest is kept.
        if ready.is_empty() {
            break;
        }
        for d in ready {
            due.remove(&d);
            order.push(d);
        }
    }
    order
}

/// Removes from `due` the children of every manifest not in it, every referrer whose subject
/// is not in it and every subject of a referrer not in it, until nothing changes (being kept
/// only spreads).
fn keep_closure(
    due: &mut BTreeSet<String>,
    children: &BTreeMap<String, BTreeSet<String>>,
    subject: &BTreeMap<String, String>,
) {
    loop {
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for (parent, kids) in children {
            if !due.contains(parent) {
                keep.extend(kids.iter().filter(|k| due.contains(*k)).cloned());
            }
        }
        for (referrer, s) in subject {
            if due.contains(referrer) && !due.contains(s) {
                keep.insert(referrer.clone());
            }
            // A kept referrer keeps its subject.
            if !due.contains(referrer) && due.contains(s) {
                keep.insert(s.clone());
            }
        }
        if keep.is_empty() {
            return;
        }
        for k in keep {
            due.remove(&k);
        }
    }
}

/// The children and subject of manifest `digest`, read from the backend; `None` when it
/// cannot be read.
async fn read_links(inner: &Inner, full: Option<&Repository>, digest: &str) -> Option<Links> {
    let m = inner
        .backend
        .client
        .get_manifest(full?, digest)
        .await
        .ok()?;
    Some(serde_json::from_slice(&m.bytes).unwrap_or_default())
}

/// Deletes `digest` if it is still due (known, untagged, not updated since `cutoff`, not
/// locked): `true` when it was deleted, `false` when it is kept; an error when the delete
/// failed.
async fn delete_if_still_due(
    inner: &Inner,
    record: &RegistryRecord,
    repo: &Repo,
    digest: &str,
    cutoff: DateTime<Utc>,
) -> Result<bool, crate::RegistryError> {
    let Some(m) = inner
        .store
        .manifest_meta(&record.name_lower, &repo.inner, digest)
        .await?
    else {
        return Ok(false);
    };
    if !m.tags.is_empty() || m.updated_at > cutoff || !m.attributes.delete_enabled {
        return Ok(false);
    }
    let full = repo.full();
    let scopes = Scopes::of(vec![format!("repository:{full}:delete")]);
    let path = format!("/v2/{full}/manifests/{digest}");
    let resp = match crate::record::delete_by_digest(
        inner,
        record,
        repo,
        digest,
        http::HeaderMap::new(),
        &scopes,
        &path,
    )
    .await
    {
        Ok(resp) => resp,
        // Locked meanwhile (the repository, or a tag that arrived): kept, as ACR keeps it.
        Err(e) if e.code == "DENIED" => return Ok(false),
        Err(e) => return Err(e),
    };
    let status = resp.status();
    if status.is_success() {
        tracing::info!(
            registry = %record.name,
            repository = %repo.inner,
            digest,
            "retention: deleted an untagged manifest"
        );
        return Ok(true);
    }
    if status == http::StatusCode::NOT_FOUND {
        // Already gone from the backend: the metadata forgets it too.
        inner
            .store
            .delete_manifest_meta(&record.name_lower, &repo.inner, digest)
            .await?;
        return Ok(true);
    }
    Err(crate::RegistryError::new(
        http::StatusCode::BAD_GATEWAY,
        "UNKNOWN",
        format!("the backend answered {status} to the delete"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn being_kept_spreads_to_children_and_referrers() {
        // i (kept, tagged) → a, b; j (due) → b, c; s refers to a; t refers to c; u refers to t.
        let children: BTreeMap<String, BTreeSet<String>> = [
            ("i", set(&["a", "b"])),
            ("j", set(&["b", "c"])),
            ("a", set(&[])),
            ("b", set(&[])),
            ("c", set(&[])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let subject: BTreeMap<String, String> = [("s", "a"), ("t", "c"), ("u", "t"), ("v", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut due = set(&["a", "b", "c", "j", "s", "t", "u", "v"]);
        keep_closure(&mut due, &children, &subject);
        // a, b: children of the kept index; s: its subject is kept; v: its subject unknown.
        assert_eq!(due, set(&["c", "j", "t", "u"]));
        // Once j is kept (locked, say), c is too, and with it t and u.
        due.remove("j");
        keep_closure(&mut due, &children, &subject);
        assert!(due.is_empty(), "{due:?}");
    }

    #[test]
    fn a_kept_referrer_keeps_its_subject() {
        // r (kept: tagged or locked) refers to d (due); d's child e is due too.
        let children: BTreeMap<String, BTreeSet<String>> = [("d", set(&["e"]))]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let subject: BTreeMap<String, String> = [("r", "d")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut due = set(&["d", "e", "z"]);
        keep_closure(&mut due, &children, &subject);
        assert_eq!(due, set(&["z"]), "d kept by its referrer, e by d");
    }
}
