//! The proxy's shared state (rules, counters, the log) and the per-request [`Tracker`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Kind, KindStats, LogEntry, RedirectHit, Rule, RuleId};
use crate::oci::OciClient;

pub(super) struct RuleSlot {
    pub(super) id: RuleId,
    pub(super) rule: Rule,
    pub(super) seen: usize,
    pub(super) fired: usize,
}

impl RuleSlot {
    /// Counts one more matching request; true if it falls inside the rule's window (after
    /// `skip`, within `times`).
    pub(super) fn next_occurrence_fires(&mut self) -> bool {
        let occurrence = self.seen;
        self.seen += 1;
        occurrence >= self.rule.skip
            && self
                .rule
                .times
                .is_none_or(|t| occurrence < self.rule.skip + t)
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) stats: HashMap<Kind, KindStats>,
    pub(super) log: Vec<LogEntry>,
    pub(super) rules: Vec<RuleSlot>,
    pub(super) next_rule: u64,
    pub(super) redirect_hits: Vec<RedirectHit>,
    /// Upload session path → sizes of the PATCHes forwarded so far.
    pub(super) patch_sizes: HashMap<String, Vec<u64>>,
    pub(super) chunk_violations: Vec<String>,
}

pub(super) struct Shared {
    pub(super) started: std::time::Instant,
    pub(super) upstream: String,
    pub(super) base: String,
    pub(super) redirect_base: String,
    pub(super) http: reqwest::Client,
    pub(super) redirect_client: OciClient,
    pub(super) state: Mutex<State>,
}

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Decrements in-flight on drop; counts bytes into the stats and the log entry.
pub(super) struct Tracker {
    shared: Arc<Shared>,
    kind: Kind,
    pub(super) seq: usize,
    finished: bool,
}

impl Tracker {
    /// Tracks request `seq` of `kind`, already counted in flight.
    pub(super) fn new(shared: Arc<Shared>, kind: Kind, seq: usize) -> Self {
        Self {
            shared,
            kind,
            seq,
            finished: false,
        }
    }
    pub(super) fn add_response_bytes(&self, n: u64) {
        let mut st = self.shared.lock();
        st.stats.entry(self.kind).or_default().response_bytes += n;
        if let Some(e) = st.log.get_mut(self.seq) {
            e.response_bytes += n;
        }
    }
    pub(super) fn add_request_bytes(shared: &Shared, kind: Kind, seq: usize, n: u64) {
        let mut st = shared.lock();
        st.stats.entry(kind).or_default().request_bytes += n;
        if let Some(e) = st.log.get_mut(seq) {
            e.request_bytes += n;
        }
    }
    /// The response is complete (its last byte handed over, or it was dropped): no longer
    /// in flight. Called before the last byte goes out, so a client that starts its next
    /// request as soon as it has the whole body is never counted twice.
    pub(super) fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let mut st = self.shared.lock();
        let s = st.stats.entry(self.kind).or_default();
        s.in_flight = s.in_flight.saturating_sub(1);
    }
    pub(super) fn set_status(&self, status: u16) {
        if let Some(e) = self.shared.lock().log.get_mut(self.seq) {
            e.status = status;
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.finish();
    }
}
