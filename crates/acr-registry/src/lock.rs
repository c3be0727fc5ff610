//! One process per data directory: [`Registry::open`](crate::Registry::open) empties
//! `uploads/` and `tmp/`, which would break another process's uploads in flight, and the
//! garbage collector's safety argument counts only this process's writers. An exclusive
//! `flock` on `<data dir>/.lock` (`acr_pidlock`: released by the kernel when the process ends,
//! however it ends) keeps a second process — a second `serve`, or `acr-import gc` next to a
//! running service — out with a message naming the holder.

use std::path::Path;

use acr_pidlock::PidLock;

use crate::RegistryError;

/// Locks `dir`, or says who holds it.
pub(crate) fn acquire(dir: &Path) -> Result<PidLock, RegistryError> {
    let path = dir.join(".lock");
    PidLock::acquire(&path).map_err(|e| match e {
        acr_pidlock::Error::Held { pid } => RegistryError::Locked {
            dir: dir.to_owned(),
            pid,
        },
        acr_pidlock::Error::Io(source) => RegistryError::Io { path, source },
    })
}
