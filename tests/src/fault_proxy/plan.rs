//! What the rules decided for one request.

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
