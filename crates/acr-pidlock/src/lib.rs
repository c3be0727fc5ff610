//! One process per directory: an exclusive `flock` on a lock file that holds the owner's pid,
//! so that a refused opener can name the holder.
//!
//! Two owners use it, each keeping its own error type and message: the built-in registry's
//! data directory (`acr-registry`, `<data dir>/.lock`) and the SQLite store
//! (`acr-store`, `<database>.lock`). It is a crate of its own because they share nothing
//! else below them: the registry must not depend on the ARM model (`acr-core`, which does no
//! I/O either), and the grammar crate is about names and digests.
//!
//! The kernel releases the lock when the process ends, however it ends, so a crashed holder
//! never leaves a stale lock behind (the pid in the file is only for the message). `flock`
//! belongs to the open file description, so a second open of the same file, even in this
//! process, is refused as well.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Write as _};
use std::path::Path;

/// Why [`PidLock::acquire`] failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another open file description holds the lock. `pid` is the holder's, when it has
    /// written it yet.
    #[error("the lock is held{}", pid.map(|p| format!(" by pid {p}")).unwrap_or_default())]
    Held { pid: Option<u32> },
    /// The lock file cannot be opened, locked or written.
    #[error("lock file I/O")]
    Io(#[source] std::io::Error),
}

/// An exclusive lock on a file, held until dropped.
#[derive(Debug)]
pub struct PidLock {
    _file: File,
}

impl PidLock {
    /// Creates `path` if needed, locks it without waiting and writes this process's pid
    /// into it.
    pub fn acquire(path: &Path) -> Result<Self, Error> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(Error::Io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // The holder may not have written its pid yet: then it is unknown.
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse::<u32>().ok());
                return Err(Error::Held { pid });
            }
            Err(TryLockError::Error(e)) => return Err(Error::Io(e)),
        }
        file.set_len(0).map_err(Error::Io)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(Error::Io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_is_refused_with_the_holders_pid_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.lock");
        let first = PidLock::acquire(&path).expect("first");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            format!("{}\n", std::process::id())
        );
        match PidLock::acquire(&path) {
            Err(Error::Held { pid }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        let _again = PidLock::acquire(&path).expect("after drop");
    }

    #[test]
    fn a_holder_that_wrote_no_pid_is_unknown_and_a_stale_pid_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.lock");
        std::fs::write(&path, "not a pid\n").expect("write");
        let holder = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        holder.try_lock().expect("lock");
        match PidLock::acquire(&path) {
            Err(Error::Held { pid }) => assert_eq!(pid, None),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(holder);
        let _lock = PidLock::acquire(&path).expect("acquire");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            format!("{}\n", std::process::id())
        );
    }

    #[test]
    fn an_unopenable_path_is_an_io_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = PidLock::acquire(&dir.path().join("missing/x.lock")).expect_err("refused");
        assert!(matches!(e, Error::Io(_)), "{e:?}");
    }
}
