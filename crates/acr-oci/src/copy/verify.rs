//! The body of a blob upload: source bytes hashed, counted and size-checked, the digest
//! verified before the last byte is forwarded (so the registry never receives a complete body
//! of wrong content), a broken or stalled download resumed with `Range`.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use acr_core::reference::{Digest, Repository};
use bytes::Bytes;
use futures::stream::StreamExt;

use super::blob::Slots;
use super::Progress;
use crate::client::RegistryClient;
use crate::error::OciError;

/// The running hash of a blob (the one hasher of `acr-grammar`).
pub(super) use acr_core::reference::Hasher;

/// Reconnections (Range resumes) per blob attempt.
const MAX_RESUMES: u32 = 8;
/// Stalls per blob attempt: the last one fails the blob (a source that keeps going silent is
/// not waited for `MAX_RESUMES` times the stall timeout).
const MAX_STALLS: u32 = 3;

/// A source failure seen inside the body stream.
pub(super) struct SourceFailure {
    pub(super) error: OciError,
    /// Starting the blob over may help (the source ignored Range after a broken connection).
    pub(super) restart: bool,
}

/// The body stream of an upload: source bytes, hashed and counted, resumed with Range after a
/// broken or stalled connection, verified before the last byte is forwarded.
pub(super) struct VerifyState {
    pub(super) src: Arc<RegistryClient>,
    pub(super) repo: Repository,
    pub(super) inner: futures::stream::BoxStream<'static, Result<Bytes, reqwest::Error>>,
    pub(super) hasher: Option<Hasher>,
    pub(super) seen: u64,
    /// Bytes since the current connection started (a reconnect that yields none is not retried).
    pub(super) since_connect: u64,
    pub(super) resumes: u32,
    /// Times the source sent nothing for the stall timeout.
    pub(super) stalls: u32,
    pub(super) size: u64,
    pub(super) digest: Digest,
    pub(super) progress: Arc<Progress>,
    /// Bytes this attempt added to `progress.bytes_copied`.
    pub(super) counted: Arc<AtomicU64>,
    pub(super) failure: Arc<Mutex<Option<SourceFailure>>>,
    /// Released when the stream ends (see [`BlobCopy::attempt`]).
    pub(super) slots: Option<Slots>,
}

impl VerifyState {
    fn fail(&self, error: OciError, restart: bool) -> io::Error {
        let msg = error.to_string();
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(SourceFailure { error, restart });
        }
        io::Error::other(msg)
    }

    fn network(&self, detail: String) -> OciError {
        OciError::Network {
            registry: self.src.name().to_owned(),
            detail,
        }
    }

    pub(super) async fn next(mut self) -> Result<Option<(Bytes, Self)>, io::Error> {
        let stall = self.src.stall_timeout();
        loop {
            // The stall detector of the source side, per chunk (the client's read timeout may
            // fire first; both are stalls). The upload's own watch ignores this wait.
            let next = tokio::time::timeout(stall, self.inner.next()).await;
            let (broken, stalled) = match next {
                Ok(Some(Ok(chunk))) => return self.accept(chunk).map(|c| Some((c, self))),
                Err(_) => (self.stalled_message(stall), true),
                Ok(Some(Err(e))) if e.is_timeout() => (self.stalled_message(stall), true),
                Ok(Some(Err(e))) => (
                    format!(
                        "the connection broke while reading blob {} after {} of {} bytes: {}",
                        self.digest,
                        self.seen,
                        self.size,
                        crate::error::describe_reqwest(e)
                    ),
                    false,
                ),
                Ok(None) if self.seen < self.size => (
                    format!(
                        "the source ended blob {} after {} of {} bytes: unexpected length of body in response",
                        self.digest, self.seen, self.size
                    ),
                    false,
                ),
                Ok(None) => {
                    if let Err(e) = self.verify_digest() {
                        return Err(self.fail(e, false));
                    }
                    self.slots = None;
                    return Ok(None);
                }
            };
            if stalled {
                self.stalls += 1;
                acr_core::metrics::stall(acr_core::metrics::Side::Source);
            }
            // Resume with Range, unless the last connection brought nothing new or the source
            // stalled too often.
            let exhausted =
                self.resumes >= MAX_RESUMES || (self.resumes > 0 && self.since_connect == 0);
            if stalled && (exhausted || self.stalls >= MAX_STALLS) {
                let e = OciError::Stalled {
                    registry: self.src.name().to_owned(),
                    detail: format!("{broken}; {}, so the copy gives up", self.why_not_resumed()),
                };
                return Err(self.fail(e, false));
            }
            if exhausted {
                return Err(self.fail(self.network(broken), false));
            }
            self.resumes += 1;
            self.since_connect = 0;
            tracing::info!(digest = %self.digest, offset = self.seen, resume = self.resumes, reason = %broken, "resuming blob download");
            match self
                .src
                .get_blob_range(&self.repo, &self.digest, self.seen, self.size)
                .await
            {
                Ok(Some(resp)) => {
                    acr_core::metrics::range_resume();
                    self.inner = resp.bytes_stream().boxed();
                }
                Ok(None) => {
                    let e = self.network(format!(
                        "{broken}; the source ignored the Range request (the remote server may not be RFC 7233 compliant), so the blob starts over"
                    ));
                    return Err(self.fail(e, true));
                }
                Err(e) => return Err(self.fail(e, false)),
            }
        }
    }

    /// Why a stalled download is not resumed again.
    fn why_not_resumed(&self) -> String {
        if self.stalls >= MAX_STALLS {
            format!(
                "it stalled {} times on this blob (resumed with Range in between)",
                self.stalls
            )
        } else if self.resumes > 0 && self.since_connect == 0 {
            "the last resume brought no data".to_owned()
        } else {
            format!("it was resumed {} times already", self.resumes)
        }
    }

    fn stalled_message(&self, stall: std::time::Duration) -> String {
        format!(
            "the source stalled: no data for {} seconds while reading blob {} (after {} of {} bytes)",
            stall.as_secs(),
            self.digest,
            self.seen,
            self.size
        )
    }

    fn accept(&mut self, chunk: Bytes) -> Result<Bytes, io::Error> {
        self.seen += chunk.len() as u64;
        self.since_connect += chunk.len() as u64;
        if self.seen > self.size {
            let e = OciError::SizeMismatch {
                registry: self.src.name().to_owned(),
                what: format!("blob {}", self.digest),
                expected: self.size,
                actual: self.seen,
            };
            return Err(self.fail(e, false));
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&chunk);
        }
        // Verify before the last byte leaves: the registry must never receive a complete body
        // for a blob whose digest is wrong.
        if self.seen == self.size {
            if let Err(e) = self.verify_digest() {
                return Err(self.fail(e, false));
            }
            // The last chunk: hyper may not poll a body of known length again, so the
            // transfer slots go now, while the target commits.
            self.slots = None;
        }
        let n = chunk.len() as u64;
        self.progress.bytes_copied.fetch_add(n, Ordering::Relaxed);
        self.counted.fetch_add(n, Ordering::Relaxed);
        Ok(chunk)
    }

    /// Compares the finished hash with the descriptor (once; later calls pass).
    fn verify_digest(&mut self) -> Result<(), OciError> {
        let Some(h) = self.hasher.take() else {
            return Ok(());
        };
        let actual = h.finish();
        if actual == self.digest {
            Ok(())
        } else {
            Err(OciError::DigestMismatch {
                registry: self.src.name().to_owned(),
                what: "blob".into(),
                expected: self.digest.to_string(),
                actual: actual.to_string(),
            })
        }
    }
}
