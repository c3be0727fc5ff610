//! What the rules decided for one request: each rule in its window adds its action to the
//! [`Plan`]; body shapers combine (the smallest limit wins), the first answering action answers.

use super::handle::RequestHead;
use super::state::RuleSlot;
use super::Action;

/// What the rules decided for one request.
#[derive(Default)]
pub(super) struct Plan {
    pub(super) strip_range: bool,
    pub(super) cut_after: Option<u64>,
    pub(super) stall_after: Option<u64>,
    pub(super) stall_upload_after: Option<u64>,
    pub(super) throttle: Option<u64>,
    pub(super) corrupt: bool,
    pub(super) answer: Option<Action>,
    /// From a RejectMonolithicPut rule: OCI-Chunk-Min-Length.
    pub(super) chunk_min: Option<u64>,
}

impl Plan {
    /// Walks the rules in order: every rule matching `head` counts one occurrence, fires if
    /// that occurrence is inside its window, and the names of the actions that fired go into
    /// `faults`.
    pub(super) fn from_rules(
        rules: &mut [RuleSlot],
        head: &RequestHead,
        faults: &mut Vec<&'static str>,
    ) -> Self {
        let mut plan = Plan::default();
        for slot in rules.iter_mut() {
            plan.note_chunk_minimum(&slot.rule.action);
            if !slot.rule.matches(head.kind, &head.path, head.facts) {
                continue;
            }
            if !slot.next_occurrence_fires() {
                continue;
            }
            if plan.answer.is_some() && is_answer(&slot.rule.action) {
                // Only the first answering rule fires.
                continue;
            }
            slot.fired += 1;
            faults.push(slot.rule.action.name());
            plan.add(&slot.rule.action);
        }
        plan
    }

    /// The largest chunk minimum of any RejectMonolithicPut rule, matching or not.
    fn note_chunk_minimum(&mut self, action: &Action) {
        if let Action::RejectMonolithicPut {
            chunk_min_length: Some(n),
            ..
        } = *action
        {
            self.chunk_min = Some(self.chunk_min.map_or(n, |m: u64| m.max(n)));
        }
    }

    /// Adds a firing action: limits keep the smallest, flags stay set, answers replace.
    fn add(&mut self, action: &Action) {
        match action {
            Action::CutAfter(n) => self.cut_after = smallest(self.cut_after, *n),
            Action::StripRange => self.strip_range = true,
            Action::Stall { after_bytes } => {
                self.stall_after = smallest(self.stall_after, *after_bytes)
            }
            Action::StallUpload { after_bytes } => {
                self.stall_upload_after = smallest(self.stall_upload_after, *after_bytes)
            }
            Action::Throttle(bps) => self.throttle = smallest(self.throttle, *bps),
            Action::Corrupt => self.corrupt = true,
            a => self.answer = Some(a.clone()),
        }
    }
}

fn smallest(current: Option<u64>, n: u64) -> Option<u64> {
    Some(current.map_or(n, |m| m.min(n)))
}

fn is_answer(a: &Action) -> bool {
    matches!(
        a,
        Action::Status { .. }
            | Action::ServeManifest { .. }
            | Action::RejectMonolithicPut { .. }
            | Action::Redirect { .. }
    )
}
