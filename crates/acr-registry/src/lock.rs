//! One process per data directory: [`Registry::open`](crate::Registry::open) empties
//! `uploads/` and `tmp/`, which would break another process's uploads in flight, and the
//! garbage collector's safety argument counts only this process's writers. An exclusive
//! `flock` on `<data dir>/.lock` (released by the kernel when the process ends, however it
//! ends) keeps a second process — a second `serve`, or `acr-import gc` next to a running
//! service — out with a message naming the holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Write as _};
use std::path::Path;

use crate::RegistryError;

pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<Self, RegistryError> {
        let path = dir.join(".lock");
        let io = |source| RegistryError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse::<u32>().ok());
                return Err(RegistryError::Locked {
                    dir: dir.to_owned(),
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io)?;
        Ok(Self { _file: file })
    }
}
