//! The on-disk layout. Everything below the data directory:
//!
//! ```text
//! blobs/<alg>/<hex[..2]>/<hex>                           content (layers, configs, manifests)
//! uploads/<uuid>                                         bytes of an upload session
//! tmp/<uuid>                                             metadata being written
//! repositories/<name>/_layers/<alg>/<hex>                empty: the blob belongs to <name>
//! repositories/<name>/_manifests/revisions/<alg>/<hex>   the manifest's media type
//! repositories/<name>/_manifests/tags/<tag>              the tagged digest
//! repositories/<name>/_referrers/<alg>/<subject hex>/<alg>-<hex>   a referrer's descriptor (JSON)
//! ```
//!
//! Repository name components never start with `_` (grammar), so `_layers` and friends cannot
//! collide with a nested repository. Every file with content is written to `tmp/` and renamed
//! into place: a reader (or a restart after a crash) sees the old or the new file, never half.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use tokio::fs;

use crate::digest::{Algorithm, Digest};
use crate::names;

/// Stripes of the per-blob lock that makes "this blob is referenced" and "sweep this blob"
/// exclusive (see `gc.rs`).
const BLOB_LOCKS: usize = 64;

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// When the page cache has it: atomic against a crashed or killed process, not against a
    /// power loss or kernel crash (see the crate doc).
    #[default]
    None,
    /// When the file and the directory entries that name it are on disk (`fsync` of the file,
    /// then of each directory created or changed on its way), so an acknowledged blob, manifest
    /// or tag survives a power loss.
    Fsync,
}

pub(crate) struct Disk {
    root: PathBuf,
    durability: Durability,
    /// `fsync` calls made (files and directories), for tests and the curious.
    syncs: std::sync::atomic::AtomicU64,
    /// Held while a blob gains a reference (commit + link, mount, manifest + revision) and
    /// while the garbage collector decides on and deletes it.
    blob_locks: Vec<tokio::sync::Mutex<()>>,
    /// While a collection runs: every blob that gained a reference since it started (it is
    /// kept whatever the mark found).
    touched: std::sync::Mutex<Option<std::collections::HashSet<Digest>>>,
}

fn ignore_missing<T: Default>(r: io::Result<T>) -> io::Result<T> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        other => other,
    }
}

impl Disk {
    pub(crate) fn new(root: PathBuf, durability: Durability) -> Disk {
        Disk {
            root,
            durability,
            syncs: std::sync::atomic::AtomicU64::new(0),
            blob_locks: (0..BLOB_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            touched: std::sync::Mutex::new(None),
        }
    }

    /// The lock of blob `d`'s stripe.
    pub(crate) fn blob_lock(&self, d: &Digest) -> &tokio::sync::Mutex<()> {
        let i = d
            .hex()
            .bytes()
            .take(2)
            .fold(0usize, |a, b| a * 31 + b as usize)
            % BLOB_LOCKS;
        &self.blob_locks[i]
    }

    /// Records that `d` gained a reference (only while a collection runs). Called with the
    /// blob's lock held.
    fn touch(&self, d: &Digest) {
        let mut t = match self.touched.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        if let Some(set) = t.as_mut() {
            set.insert(d.clone());
        }
    }

    /// Starts (`true`) or ends (`false`) recording touched blobs; ending returns them.
    pub(crate) fn record_touches(&self, on: bool) -> std::collections::HashSet<Digest> {
        let mut t = match self.touched.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        let before = t.take().unwrap_or_default();
        if on {
            *t = Some(Default::default());
        }
        before
    }

    /// Whether `d` gained a reference since the collection started. Called with its lock held.
    pub(crate) fn was_touched(&self, d: &Digest) -> bool {
        let t = match self.touched.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        t.as_ref().is_some_and(|set| set.contains(d))
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn tmp_path(&self) -> PathBuf {
        self.tmp_dir().join(uuid::Uuid::new_v4().to_string())
    }

    pub(crate) fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        // `repo` was validated by the grammar: components of [a-z0-9._-], never "." or "..".
        let mut p = self.root.join("repositories");
        for c in repo.split('/') {
            p.push(c);
        }
        p
    }

    fn layer_link(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_layers")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    fn revision_path(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_manifests/revisions")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    fn tags_dir(&self, repo: &str) -> PathBuf {
        self.repo_dir(repo).join("_manifests/tags")
    }

    fn referrers_dir(&self, repo: &str, subject: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex())
    }

    fn referrer_entry(&self, repo: &str, subject: &Digest, referrer: &Digest) -> PathBuf {
        self.referrers_dir(repo, subject).join(format!(
            "{}-{}",
            referrer.algorithm().as_str(),
            referrer.hex()
        ))
    }

    /// Writes `bytes` to `dest` through a temp file and a rename (durably with
    /// [`Durability::Fsync`]: the file before the rename, the directory after).
    async fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.tmp_path();
        let written = match self.durability {
            Durability::None => fs::write(&tmp, bytes).await,
            Durability::Fsync => {
                let (path, data) = (tmp.clone(), bytes.to_vec());
                let r = blocking(move || {
                    use std::io::Write as _;
                    let mut f = std::fs::File::create(&path)?;
                    f.write_all(&data)?;
                    f.sync_all()
                })
                .await;
                if r.is_ok() {
                    self.count_syncs(1);
                }
                r
            }
        };
        if let Err(e) = written {
            // A full disk stops the write half-way: the part written goes too.
            let _ = fs::remove_file(&tmp).await;
            return Err(e);
        }
        if let Some(parent) = dest.parent() {
            if let Err(e) = self.create_dirs(parent).await {
                let _ = fs::remove_file(&tmp).await;
                return Err(e);
            }
        }
        if let Err(e) = fs::rename(&tmp, dest).await {
            let _ = fs::remove_file(&tmp).await;
            return Err(e);
        }
        self.sync_parent(dest).await
    }

    /// `create_dir_all`; with [`Durability::Fsync`] each directory created is made durable in
    /// its parent.
    async fn create_dirs(&self, dir: &Path) -> io::Result<()> {
        if self.durability == Durability::None {
            return fs::create_dir_all(dir).await;
        }
        if exists(dir).await? {
            return Ok(());
        }
        // The missing ancestors, outermost first.
        let mut missing = vec![dir.to_path_buf()];
        let mut at = dir.parent();
        while let Some(p) = at {
            if exists(p).await? {
                break;
            }
            missing.push(p.to_path_buf());
            at = p.parent();
        }
        for d in missing.iter().rev() {
            match fs::create_dir(d).await {
                Ok(()) => self.sync_parent(d).await?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// With [`Durability::Fsync`], makes the directory entry of `path` durable.
    async fn sync_parent(&self, path: &Path) -> io::Result<()> {
        if self.durability == Durability::None {
            return Ok(());
        }
        let Some(parent) = path.parent().map(Path::to_path_buf) else {
            return Ok(());
        };
        blocking(move || std::fs::File::open(&parent)?.sync_all()).await?;
        self.count_syncs(1);
        Ok(())
    }

    /// With [`Durability::Fsync`], makes a file's content durable.
    async fn sync_file(&self, path: &Path) -> io::Result<()> {
        if self.durability == Durability::None {
            return Ok(());
        }
        let path = path.to_path_buf();
        blocking(move || std::fs::File::open(&path)?.sync_all()).await?;
        self.count_syncs(1);
        Ok(())
    }

    fn count_syncs(&self, n: u64) {
        self.syncs
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Removes a file; with [`Durability::Fsync`] the removal is made durable too.
    async fn remove(&self, p: &Path) -> io::Result<bool> {
        let removed = remove(p).await?;
        if removed {
            self.sync_parent(p).await?;
        }
        Ok(removed)
    }

    /// `fsync` calls made so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The blob's size when its content is stored, whatever repository it belongs to.
    pub(crate) async fn blob_size(&self, d: &Digest) -> io::Result<Option<u64>> {
        match fs::metadata(self.blob_path(d)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The blob's size when it belongs to `repo` (linked there and its content stored).
    pub(crate) async fn linked_blob_size(&self, repo: &str, d: &Digest) -> io::Result<Option<u64>> {
        if !exists(&self.layer_link(repo, d)).await? {
            return Ok(None);
        }
        self.blob_size(d).await
    }

    /// Moves a verified upload file into the content store and links it to `repo`, as one
    /// step for the garbage collector. Another upload of the same content may land first:
    /// renaming over it is harmless (same bytes), so concurrent pushes are safe.
    pub(crate) async fn commit_blob(&self, file: &Path, d: &Digest, repo: &str) -> io::Result<()> {
        let _held = self.blob_lock(d).lock().await;
        let dest = self.blob_path(d);
        self.sync_file(file).await?;
        if let Some(parent) = dest.parent() {
            self.create_dirs(parent).await?;
        }
        fs::rename(file, &dest).await?;
        self.sync_parent(&dest).await?;
        self.link_blob(repo, d).await?;
        self.touch(d);
        Ok(())
    }

    /// Links stored blob `d` to `repo` when `from` holds it (a mount), or, with `from` `None`,
    /// when its content is stored at all; one step for the garbage collector. Returns whether
    /// it was linked.
    pub(crate) async fn mount_blob(
        &self,
        repo: &str,
        from: Option<&str>,
        d: &Digest,
    ) -> io::Result<bool> {
        let _held = self.blob_lock(d).lock().await;
        let present = match from {
            Some(from) => self.linked_blob_size(from, d).await?.is_some(),
            None => self.blob_size(d).await?.is_some(),
        };
        if present {
            self.link_blob(repo, d).await?;
            self.touch(d);
        }
        Ok(present)
    }

    async fn link_blob(&self, repo: &str, d: &Digest) -> io::Result<()> {
        let link = self.layer_link(repo, d);
        if let Some(parent) = link.parent() {
            self.create_dirs(parent).await?;
        }
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&link)
            .await
            .map(drop)?;
        self.sync_parent(&link).await
    }

    /// Removes the blob from `repo` (the content stays: other repositories may share it).
    pub(crate) async fn unlink_blob(&self, repo: &str, d: &Digest) -> io::Result<bool> {
        self.remove(&self.layer_link(repo, d)).await
    }

    /// Stores a manifest's bytes (unless already there) and its revision in `repo`, as one
    /// step for the garbage collector.
    pub(crate) async fn put_manifest(
        &self,
        repo: &str,
        d: &Digest,
        bytes: &[u8],
        media_type: &str,
    ) -> io::Result<()> {
        let _held = self.blob_lock(d).lock().await;
        let dest = self.blob_path(d);
        if !exists(&dest).await? {
            self.write_atomic(&dest, bytes).await?;
        }
        self.write_atomic(&self.revision_path(repo, d), media_type.as_bytes())
            .await?;
        self.touch(d);
        Ok(())
    }

    pub(crate) async fn read_blob(&self, d: &Digest) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.blob_path(d)).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The stored media type of the manifest when it belongs to `repo`.
    pub(crate) async fn revision(&self, repo: &str, d: &Digest) -> io::Result<Option<String>> {
        match fs::read(self.revision_path(repo, d)).await {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn delete_revision(&self, repo: &str, d: &Digest) -> io::Result<bool> {
        self.remove(&self.revision_path(repo, d)).await
    }

    pub(crate) async fn put_tag(&self, repo: &str, tag: &str, d: &Digest) -> io::Result<()> {
        self.write_atomic(&self.tags_dir(repo).join(tag), d.to_string().as_bytes())
            .await
    }

    /// The digest a tag points at (a file that does not hold a digest counts as no tag).
    pub(crate) async fn tag(&self, repo: &str, tag: &str) -> io::Result<Option<Digest>> {
        match fs::read(self.tags_dir(repo).join(tag)).await {
            Ok(b) => Ok(std::str::from_utf8(&b)
                .ok()
                .and_then(|s| Digest::parse(s.trim()).ok())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn delete_tag(&self, repo: &str, tag: &str) -> io::Result<bool> {
        self.remove(&self.tags_dir(repo).join(tag)).await
    }

    /// Whether anything was ever pushed to `repo` (it has manifests or blobs).
    pub(crate) async fn repo_exists(&self, repo: &str) -> io::Result<bool> {
        let dir = self.repo_dir(repo);
        Ok(exists(&dir.join("_manifests")).await? || exists(&dir.join("_layers")).await?)
    }

    /// The repository's tags in lexical order.
    pub(crate) async fn tags(&self, repo: &str) -> io::Result<Vec<String>> {
        let mut out = BTreeSet::new();
        let mut rd = match fs::read_dir(self.tags_dir(repo)).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        while let Some(entry) = rd.next_entry().await? {
            if let Some(name) = entry.file_name().to_str() {
                if names::valid_tag(name) {
                    out.insert(name.to_owned());
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    pub(crate) async fn put_referrer(
        &self,
        repo: &str,
        subject: &Digest,
        referrer: &Digest,
        descriptor: &serde_json::Value,
    ) -> io::Result<()> {
        let bytes = serde_json::to_vec(descriptor).map_err(io::Error::other)?;
        self.write_atomic(&self.referrer_entry(repo, subject, referrer), &bytes)
            .await
    }

    pub(crate) async fn delete_referrer(
        &self,
        repo: &str,
        subject: &Digest,
        referrer: &Digest,
    ) -> io::Result<bool> {
        self.remove(&self.referrer_entry(repo, subject, referrer))
            .await
    }

    /// Descriptors of the manifests of `repo` whose subject is `subject`, ordered by digest.
    pub(crate) async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
    ) -> io::Result<Vec<serde_json::Value>> {
        let mut rd = match fs::read_dir(self.referrers_dir(repo, subject)).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        while let Some(entry) = rd.next_entry().await? {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some(referrer) = name
                .split_once('-')
                .and_then(|(a, h)| Digest::parse(&format!("{a}:{h}")).ok())
            else {
                continue;
            };
            // An entry whose manifest is gone (deleted concurrently) is not listed.
            if self.revision(repo, &referrer).await?.is_none() {
                continue;
            }
            let bytes = ignore_missing(fs::read(entry.path()).await)?;
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                out.push((referrer.to_string(), v));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }

    /// Every repository (with manifests or blobs), in lexical order. Walks the tree.
    pub(crate) async fn catalog(&self) -> io::Result<Vec<String>> {
        let root = self.root.join("repositories");
        tokio::task::spawn_blocking(move || {
            let mut out = BTreeSet::new();
            walk_repositories(&root, String::new(), &mut out)?;
            Ok(out.into_iter().collect())
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl Disk {
    /// Removes repository `repo` (its tags, manifests, blob links and referrers; not the
    /// repositories nested under its name, nor the content files, which the garbage collector
    /// frees once nothing references them). Returns the manifests and tags it had, or `None`
    /// when there was no such repository. The caller holds the repository's lock.
    pub(crate) async fn delete_repository(
        &self,
        repo: &str,
    ) -> io::Result<Option<(Vec<Digest>, Vec<String>)>> {
        if !self.repo_exists(repo).await? {
            return Ok(None);
        }
        let tags = self.tags(repo).await?;
        let dir = self.repo_dir(repo);
        let root = self.root.join("repositories");
        let manifests = tokio::task::spawn_blocking(move || -> io::Result<Vec<Digest>> {
            let revisions = list_digests(&dir.join("_manifests/revisions"))?;
            for sub in ["_manifests", "_layers", "_referrers"] {
                match std::fs::remove_dir_all(dir.join(sub)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            // Empty directories up to the root go too (a nested repository keeps its parents).
            let mut d = dir.as_path();
            while d != root && std::fs::remove_dir(d).is_ok() {
                match d.parent() {
                    Some(p) => d = p,
                    None => break,
                }
            }
            Ok(revisions)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(Some((manifests, tags)))
    }

    /// The blobs `repo` links and the manifests (revisions) it holds.
    pub(crate) fn references_blocking(&self, repo: &str) -> io::Result<(Vec<Digest>, Vec<Digest>)> {
        let dir = self.repo_dir(repo);
        Ok((
            list_digests(&dir.join("_layers"))?,
            list_digests(&dir.join("_manifests/revisions"))?,
        ))
    }

    /// Every stored content file: its digest, path and size.
    pub(crate) fn all_blobs_blocking(&self) -> io::Result<Vec<(Digest, PathBuf, u64)>> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let base = self.root.join("blobs").join(alg.as_str());
            let shards = match std::fs::read_dir(&base) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for shard in shards {
                let shard = shard?;
                if !shard.file_type()?.is_dir() {
                    continue;
                }
                for f in std::fs::read_dir(shard.path())? {
                    let f = f?;
                    let Some(name) = f.file_name().to_str().map(str::to_owned) else {
                        continue;
                    };
                    if let Ok(d) = Digest::parse(&format!("{}:{name}", alg.as_str())) {
                        let len = f.metadata()?.len();
                        out.push((d, f.path(), len));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every repository, for a blocking caller (the garbage collector's mark).
    pub(crate) fn catalog_blocking(&self) -> io::Result<Vec<String>> {
        let mut out = BTreeSet::new();
        walk_repositories(&self.root.join("repositories"), String::new(), &mut out)?;
        Ok(out.into_iter().collect())
    }
}

/// The digests named by `<dir>/<alg>/<hex>` entries.
fn list_digests(dir: &Path) -> io::Result<Vec<Digest>> {
    let mut out = Vec::new();
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let rd = match std::fs::read_dir(dir.join(alg.as_str())) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            if let Some(name) = e.file_name().to_str() {
                if let Ok(d) = Digest::parse(&format!("{}:{name}", alg.as_str())) {
                    out.push(d);
                }
            }
        }
    }
    out.sort_by_key(|d| d.to_string());
    Ok(out)
}

fn walk_repositories(dir: &Path, prefix: String, out: &mut BTreeSet<String>) -> io::Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('_') {
            if (name == "_manifests" || name == "_layers") && !prefix.is_empty() {
                out.insert(prefix.clone());
            }
            continue;
        }
        if !names::valid_component(&name) {
            continue;
        }
        let child = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        walk_repositories(&entry.path(), child, out)?;
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

async fn exists(p: &Path) -> io::Result<bool> {
    fs::try_exists(p).await
}

async fn remove(p: &Path) -> io::Result<bool> {
    match fs::remove_file(p).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Hashes the first `len` bytes of a file with `algorithm` (used when a client finishes an
/// upload with a sha512 digest: the running hash of a session is sha256).
pub(crate) async fn hash_file(path: &Path, len: u64, algorithm: Algorithm) -> io::Result<Digest> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(&path)?.take(len);
        let mut h = algorithm.hasher();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    })
    .await
    .map_err(io::Error::other)?
}
