//! Deleting a finished run's files only after the last timed run.
//!
//! Every timed copy starts on an empty target (docker-registry's storage wiped, or a fresh
//! data dir for the built-in registry). Deleting the last run's files right before the next
//! run makes the disk free their blocks while that run is timed: on an ext4 mounted with
//! `discard`, as these machines' is, in the journal's commits, which every `fsync`
//! (PostgreSQL's WAL, a registry's) then waits behind. So a wiped directory is renamed into
//! the work dir's `trash/` (one metadata change, same filesystem), its dirty pages are written
//! back at once ([`crate::sync_disks`], untimed: a deleted file's were dropped, a kept one's
//! would be written during a later run), and the trash is deleted at the end of the bench.
//! Where the disk has less than [`KEEP_FREE_BYTES`] free (or that cannot be read), a directory
//! is deleted at once, as before, and the log says so.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use anyhow::{Context, Result};

/// Below this much free space on the work dir's filesystem, wiped directories are deleted at
/// once instead of kept until the end.
const KEEP_FREE_BYTES: u64 = 16 << 30;

/// The bench's work dir; the trash is its `trash/`.
static WORK_DIR: OnceLock<PathBuf> = OnceLock::new();
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Keeps wiped directories in `work_dir`'s `trash/` from now on (one per bench process).
pub fn init(work_dir: &Path) {
    let _ = WORK_DIR.set(work_dir.to_path_buf());
}

/// Empties `dir`: moved into the trash, or deleted at once when the disk is short of space
/// (or no trash was set up).
pub async fn wipe(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if let Some(work_dir) = WORK_DIR.get() {
        let free = free_bytes(work_dir);
        if free.is_some_and(|f| f >= KEEP_FREE_BYTES) {
            let trash = work_dir.join("trash");
            std::fs::create_dir_all(&trash)
                .with_context(|| format!("create {}", trash.display()))?;
            let to = trash.join(NEXT.fetch_add(1, Ordering::Relaxed).to_string());
            if std::fs::rename(dir, &to).is_ok() {
                // The moved files' dirty pages would otherwise be written back during a later
                // run (a deleted file's are dropped): write them now.
                return crate::sync_disks().await;
            }
        } else {
            let why = match free {
                Some(f) => format!("{} MiB free", f >> 20),
                None => "free space unknown".to_owned(),
            };
            crate::log(format!(
                "{why}, under {} GiB: deleting {} now (its blocks are freed during the next run)",
                KEEP_FREE_BYTES >> 30,
                dir.display()
            ));
        }
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("delete {}", dir.display()))
}

/// Bytes an unprivileged writer may still use on the filesystem of `path`, if it can be read.
fn free_bytes(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}
