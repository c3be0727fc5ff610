//! Deleting a finished run's files only after the last timed run.
//!
//! Every timed copy starts on an empty target (docker-registry's storage wiped, or a fresh
//! data dir for the built-in registry). Deleting the last run's files right before the next
//! run makes the disk free their blocks while that run is timed: on an ext4 mounted with
//! `discard`, as these machines' is, the freed blocks are discarded in the journal's commits,
//! which every `fsync` (PostgreSQL's WAL, a registry's) then waits behind. So a wiped
//! directory is renamed into the work dir's `trash/` (one metadata change, same filesystem),
//! its dirty pages are written back at once (`sync`, untimed: a deleted file's were dropped,
//! a kept one's would be written during a later run), and the trash is deleted at the end of
//! the bench. Where the disk has less than [`KEEP_FREE_BYTES`] free (or `df` cannot tell), a
//! directory is deleted at once, as before, and the log says so.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use anyhow::{Context, Result};

/// Below this much free space on the work dir's filesystem, wiped directories are deleted at
/// once instead of kept until the end.
const KEEP_FREE_BYTES: u64 = 16 << 30;

static TRASH: OnceLock<PathBuf> = OnceLock::new();
static NEXT: AtomicU64 = AtomicU64::new(0);

/// The trash directory of `work_dir` (one per bench process).
pub fn init(work_dir: &Path) {
    let _ = TRASH.set(work_dir.join("trash"));
}

/// Empties `dir`: moved into the trash, or deleted at once when the disk is short of space
/// (or no trash was set up).
pub fn wipe(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if let Some(trash) = TRASH.get() {
        let free = free_bytes(trash.parent().unwrap_or(trash));
        if free.is_some_and(|f| f >= KEEP_FREE_BYTES) {
            std::fs::create_dir_all(trash)
                .with_context(|| format!("create {}", trash.display()))?;
            let to = trash.join(NEXT.fetch_add(1, Ordering::Relaxed).to_string());
            if std::fs::rename(dir, &to).is_ok() {
                // The moved files' dirty pages would otherwise be written back during a later
                // run (a deleted file's are dropped): write them now.
                sync();
                return Ok(());
            }
        } else {
            let why = match free {
                Some(f) => format!("{} MiB free", f >> 20),
                None => "free space unknown (df)".to_owned(),
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

/// `sync(1)`: writes every dirty page back (its failure only shows as a slower run).
fn sync() {
    if let Err(e) = std::process::Command::new("sync").status() {
        crate::log(format!("sync: {e}"));
    }
}

/// Free bytes on the filesystem of `path` (`df`), if it can be read.
fn free_bytes(path: &Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(path)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}
