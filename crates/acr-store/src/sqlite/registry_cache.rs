//! The SQLite store's registries as last read, by the lookup that found them: the lookup that starts every
//! `importImage` (and every ARM or login-server request naming a registry) is answered without
//! a trip to a reader connection's thread, which under four copies waited for a core (issue 14,
//! `docs/BENCHMARKS.md`).
//!
//! Exact, not eventually consistent, because a SQLite store belongs to one process (its
//! `.lock` file): every write to `registries` goes through this process's store, which calls
//! [`RegistryCache::changed`] once the write has committed (or failed). A read stores what it
//! found only when no write finished since it began (the generation it saw before its query is
//! still current), so a read that raced a write never leaves the older row behind, and a write
//! that commits clears whatever was stored before it. Only rows are kept, not "no such
//! registry". PostgreSQL has no such cache: its replicas write the same table.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::registries::RegistryRecord;

/// Registries kept at most; past it the map starts over (a lookup then reads the row again).
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct RegistryCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Writes to `registries` finished so far.
    generation: u64,
    /// By lookup: each lookup of the store names its own key (the statement's parameters).
    by_key: HashMap<String, RegistryRecord>,
}

impl RegistryCache {
    /// What the lookup `key` found, if it was read since the last write.
    pub(super) fn get(&self, key: &str) -> Option<RegistryRecord> {
        self.inner.lock().ok()?.by_key.get(key).cloned()
    }

    /// The generation to pass to [`put`](Self::put): read it before the query.
    pub(super) fn generation(&self) -> u64 {
        self.inner.lock().map_or(0, |i| i.generation)
    }

    /// Keeps `rec`, found by the lookup `key` in a query that began at `generation`, unless a
    /// write finished since.
    pub(super) fn put(&self, generation: u64, key: String, rec: &RegistryRecord) {
        let Ok(mut i) = self.inner.lock() else {
            return;
        };
        if i.generation != generation {
            return;
        }
        if i.by_key.len() >= MAX_ENTRIES {
            i.by_key.clear();
        }
        i.by_key.insert(key, rec.clone());
    }

    /// A write to `registries` committed (or failed): forget everything read before it.
    pub(super) fn changed(&self) {
        // A poisoned lock (a panic while holding it) is still cleared: nothing stale is served.
        let mut i = match self.inner.lock() {
            Ok(i) => i,
            Err(poisoned) => poisoned.into_inner(),
        };
        i.generation = i.generation.wrapping_add(1);
        i.by_key.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, sku: &str) -> RegistryRecord {
        let id = acr_core::arm::RegistryId::new("00000000-0000-0000-0000-000000000001", "rg", name)
            .expect("a valid registry id");
        RegistryRecord::new(
            &id,
            "westus".into(),
            sku.into(),
            None,
            crate::registries::RegistryProps::default(),
        )
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept_and_a_write_clears_what_was() {
        let c = RegistryCache::default();
        let g = c.generation();
        c.put(g, "registry1".into(), &rec("Registry1", "Basic"));
        assert_eq!(c.get("registry1").map(|r| r.sku), Some("Basic".to_owned()));

        // A write commits: what was read before it is gone.
        c.changed();
        assert!(c.get("registry1").is_none());

        // A read that began before a write and stores after it: not kept.
        let before = c.generation();
        c.changed();
        c.put(before, "registry1".into(), &rec("Registry1", "Basic"));
        assert!(c.get("registry1").is_none());

        // One that began after it: kept.
        let after = c.generation();
        c.put(after, "registry1".into(), &rec("Registry1", "Premium"));
        assert_eq!(
            c.get("registry1").map(|r| r.sku),
            Some("Premium".to_owned())
        );
    }
}
