//! The fault configuration: what a [`Rule`] does ([`Action`]) and which requests it fires on.

use bytes::Bytes;

use super::Kind;

/// What a rule does when it fires.
#[derive(Clone, Debug)]
pub enum Action {
    /// Forward the response headers and the first `n` body bytes, then drop the connection.
    CutAfter(u64),
    /// Remove the `Range` header going upstream (the upstream answers 200 with everything).
    StripRange,
    /// Answer directly (the request body, if any, is read and discarded first).
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// Send the headers and `after_bytes` body bytes, then hold the connection open, silent.
    Stall { after_bytes: u64 },
    /// Forward `after_bytes` of the request body, then stop reading it and never answer: the
    /// client's upload stalls (once the socket buffers, a few MiB, are full).
    StallUpload { after_bytes: u64 },
    /// Limit each matching response body to this many bytes per second.
    Throttle(u64),
    /// Forward, but flip the first byte of the response body (same length, wrong digest).
    Corrupt,
    /// Answer a manifest GET/HEAD with this body (`Docker-Content-Digest` = its sha256).
    ServeManifest { content_type: String, body: Bytes },
    /// Answer a PUT with a non-empty body to an upload URL with `status` (413 + SIZE_INVALID
    /// body) without forwarding it. With `chunk_min_length`, upload POST responses also carry
    /// `OCI-Chunk-Min-Length`, and a PATCH that follows a PATCH smaller than that in the same
    /// session gets 416 (recorded in
    /// [`FaultProxy::chunk_violations`](super::FaultProxy::chunk_violations)).
    RejectMonolithicPut {
        status: u16,
        chunk_min_length: Option<u64>,
    },
    /// Answer a blob GET with `307 Location: <to or the redirect target>/<digest>?repo=<name>`.
    Redirect { to: Option<String> },
}

impl Action {
    /// `429` with `Retry-After: <secs>` and a `TOOMANYREQUESTS` error body.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Action::Status {
            status: 429,
            headers: vec![
                ("Retry-After".into(), retry_after_secs.to_string()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: Bytes::from_static(
                br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
            ),
        }
    }

    /// A bare status with a distribution-style error body.
    pub fn status(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
        Action::Status {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Bytes::from(serde_json::to_vec(&body).expect("serialize error body")),
        }
    }

    /// 413 SIZE_INVALID for monolithic PUTs, chunk minimum `chunk_min_length` when given.
    pub fn reject_monolithic_put(chunk_min_length: Option<u64>) -> Self {
        Action::RejectMonolithicPut {
            status: 413,
            chunk_min_length,
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Action::CutAfter(_) => "CutAfter",
            Action::StripRange => "StripRange",
            Action::Status { .. } => "Status",
            Action::Stall { .. } => "Stall",
            Action::StallUpload { .. } => "StallUpload",
            Action::Throttle(_) => "Throttle",
            Action::Corrupt => "Corrupt",
            Action::ServeManifest { .. } => "ServeManifest",
            Action::RejectMonolithicPut { .. } => "RejectMonolithicPut",
            Action::Redirect { .. } => "Redirect",
        }
    }
}

/// A fault: an action, which requests it applies to, and on which of their occurrences.
#[derive(Clone, Debug)]
pub struct Rule {
    pub action: Action,
    /// Kinds it applies to (empty: every kind).
    pub kinds: Vec<Kind>,
    /// A substring the path (with query) must contain.
    pub path_contains: Option<String>,
    /// Matching requests to let through untouched before firing.
    pub skip: usize,
    /// How many matching requests it fires on after `skip` (None: all).
    pub times: Option<usize>,
    /// Only requests with a `Content-Range: start-end` whose start is at least this.
    pub content_range_from: Option<u64>,
    /// Only requests whose `Content-Length` is at least this.
    pub min_content_length: Option<u64>,
}

/// What rules match on, besides kind and path.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RequestFacts {
    pub(super) nonempty_body: bool,
    pub(super) content_range_start: Option<u64>,
    pub(super) content_length: Option<u64>,
}

impl Rule {
    /// A rule firing on every request.
    pub fn new(action: Action) -> Self {
        Self {
            action,
            kinds: Vec::new(),
            path_contains: None,
            skip: 0,
            times: None,
            content_range_from: None,
            min_content_length: None,
        }
    }
    /// Also (or only) requests of `kind`.
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kinds.push(kind);
        self
    }
    /// Only requests whose path (with query) contains `s`.
    pub fn path(mut self, s: &str) -> Self {
        self.path_contains = Some(s.to_string());
        self
    }
    /// Fire on the first `n` matching requests (after `skip`) only.
    pub fn first(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }
    /// Let `n` matching requests through before firing.
    pub fn skip(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }

    /// Only requests (PATCHes) whose `Content-Range` starts at `offset` or later.
    pub fn content_range_from(mut self, offset: u64) -> Self {
        self.content_range_from = Some(offset);
        self
    }
    /// Only requests whose `Content-Length` is at least `n`.
    pub fn min_content_length(mut self, n: u64) -> Self {
        self.min_content_length = Some(n);
        self
    }

    pub(super) fn matches(&self, kind: Kind, path: &str, facts: RequestFacts) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&kind) {
            return false;
        }
        if let Some(from) = self.content_range_from {
            if facts.content_range_start.is_none_or(|s| s < from) {
                return false;
            }
        }
        if let Some(min) = self.min_content_length {
            if facts.content_length.is_none_or(|l| l < min) {
                return false;
            }
        }
        let nonempty_body = facts.nonempty_body;
        if let Some(p) = &self.path_contains {
            if !path.contains(p.as_str()) {
                return false;
            }
        }
        match self.action {
            Action::RejectMonolithicPut { .. } => kind == Kind::UploadPut && nonempty_body,
            Action::ServeManifest { .. } => {
                matches!(kind, Kind::ManifestGet | Kind::ManifestHead)
            }
            Action::Redirect { .. } => kind == Kind::BlobGet,
            _ => true,
        }
    }
}

/// Handle of an added rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleId(pub(super) u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fire_on_their_window() {
        let r = Rule::new(Action::StripRange)
            .kind(Kind::BlobGet)
            .skip(1)
            .first(2);
        let none = RequestFacts::default();
        let body = RequestFacts {
            nonempty_body: true,
            ..none
        };
        assert!(r.matches(Kind::BlobGet, "/v2/a/blobs/x", none));
        assert!(!r.matches(Kind::BlobHead, "/v2/a/blobs/x", none));
        let put = Rule::new(Action::reject_monolithic_put(None));
        assert!(put.matches(Kind::UploadPut, "/v2/a/blobs/uploads/u", body));
        assert!(!put.matches(Kind::UploadPut, "/v2/a/blobs/uploads/u", none));
        assert!(!put.matches(Kind::UploadPatch, "/v2/a/blobs/uploads/u", body));
        let mid = Rule::new(Action::StripRange).content_range_from(1);
        let at = |start| RequestFacts {
            content_range_start: Some(start),
            ..body
        };
        assert!(!mid.matches(Kind::UploadPatch, "/u", at(0)));
        assert!(mid.matches(Kind::UploadPatch, "/u", at(5)));
        assert!(!mid.matches(Kind::UploadPatch, "/u", none));
    }
}
