//! One blob, source → target: presence check (a mount from the target repository itself, or a
//! HEAD), mount (same registry), upload session, the verified body stream into one streaming
//! PUT or chunked PATCHes; attempts that may start over; the transfer slots it holds until its
//! last byte is handed to the upload.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use acr_core::metrics;
use acr_core::reference::{Digest, Repository};
use futures::stream::{self, StreamExt};

use super::verify::{Hasher, SourceFailure, VerifyState};
use super::{BlobBody, BlobSink, CopyError, Progress};
use crate::client::{RegistryClient, UploadStart};
use crate::error::OciError;
use crate::media::Descriptor;

/// Attempts per blob when an attempt must start over (target refused the upload mode, token
/// expired mid-upload, source ignored Range after a broken connection, transient target error).
const BLOB_ATTEMPTS: u32 = 3;

/// How one attempt at a blob ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    /// The target repository had it.
    Present,
    /// Mounted from another repository of the target registry.
    Mounted,
    /// Its bytes went from the source to the target.
    Transferred,
}

/// What starting a blob's upload led to.
enum Start {
    /// Nothing to upload.
    Done(Done),
    /// An upload session, with the registry's `OCI-Chunk-Min-Length`.
    Upload(url::Url, Option<u64>),
}

/// How one attempt at a blob ended badly.
enum BlobFailure {
    /// Start the blob over (a fresh upload session).
    Restart(CopyError),
    Fatal(CopyError),
}

/// One blob: source → target.
pub(super) struct BlobCopy {
    pub(super) src: Arc<RegistryClient>,
    pub(super) src_repo: Repository,
    pub(super) dst: Arc<RegistryClient>,
    pub(super) dst_repo: Repository,
    pub(super) progress: Arc<Progress>,
    /// The operation's own bound on concurrent transfers.
    pub(super) op_slots: Arc<tokio::sync::Semaphore>,
    /// Blobs from the source go here instead of an HTTP upload to `dst`.
    pub(super) sink: Option<Arc<dyn BlobSink>>,
}

impl BlobCopy {
    pub(super) async fn run(&self, desc: &Descriptor) -> Result<(), CopyError> {
        let size = desc.size.max(0) as u64;
        let digest = Digest::parse(&desc.digest).map_err(|e| {
            CopyError::Source(OciError::Invalid {
                registry: self.src.name().to_owned(),
                detail: e.to_string(),
            })
        })?;
        let started = std::time::Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let counted = Arc::new(AtomicU64::new(0));
            let slots = self.acquire_slots().await?;
            match self.attempt(&digest, size, counted.clone(), slots).await {
                Ok(done) => {
                    if done != Done::Transferred {
                        self.progress
                            .bytes_skipped
                            .fetch_add(size, Ordering::Relaxed);
                    }
                    self.progress.blobs_done.fetch_add(1, Ordering::Relaxed);
                    metrics::blob(
                        match done {
                            Done::Present => metrics::BlobResult::Skipped,
                            Done::Mounted => metrics::BlobResult::Mounted,
                            Done::Transferred => metrics::BlobResult::Copied,
                        },
                        size,
                    );
                    tracing::debug!(%digest, size, ?done, elapsed = ?started.elapsed(), "blob done");
                    return Ok(());
                }
                Err(BlobFailure::Restart(e)) if attempt < BLOB_ATTEMPTS => {
                    tracing::info!(%digest, attempt, error = %e, "blob copy starts over");
                    // This attempt's bytes will be copied again: do not count them twice.
                    self.progress
                        .bytes_copied
                        .fetch_sub(counted.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                Err(BlobFailure::Restart(e)) | Err(BlobFailure::Fatal(e)) => {
                    self.progress
                        .bytes_copied
                        .fetch_sub(counted.load(Ordering::Relaxed), Ordering::Relaxed);
                    metrics::blob(metrics::BlobResult::Failed, size);
                    return Err(e);
                }
            }
        }
    }

    /// The transfer slots of one attempt: the operation's own, then one per registry host
    /// (bounded across operations), always in name order so two copies in opposite
    /// directions cannot hold one slot each and wait for the other.
    async fn acquire_slots(&self) -> Result<Slots, CopyError> {
        let closed = |_| CopyError::Unsupported("the transfer limiter was closed".into());
        let (first, second) = if self.src.same_registry(&self.dst) {
            (self.src.transfer_slots().clone(), None)
        } else if self.src.name() <= self.dst.name() {
            (
                self.src.transfer_slots().clone(),
                Some(self.dst.transfer_slots().clone()),
            )
        } else {
            (
                self.dst.transfer_slots().clone(),
                Some(self.src.transfer_slots().clone()),
            )
        };
        let op = self
            .op_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(closed)?;
        let p1 = first.acquire_owned().await.map_err(closed)?;
        let p2 = match second {
            Some(s) => Some(s.acquire_owned().await.map_err(closed)?),
            None => None,
        };
        Ok(Slots(
            vec![Some(op), Some(p1), p2].into_iter().flatten().collect(),
        ))
    }

    /// One attempt. `slots` are held until the source's last byte has gone into the upload:
    /// the target's commit (which may wait for its disk) does not keep another blob from
    /// starting.
    async fn attempt(
        &self,
        digest: &Digest,
        size: u64,
        counted: Arc<AtomicU64>,
        slots: Slots,
    ) -> Result<Done, BlobFailure> {
        let target_err = |e: OciError| {
            if e.is_transient() || matches!(e, OciError::Unauthorized { .. }) {
                BlobFailure::Restart(CopyError::Target(e))
            } else {
                BlobFailure::Fatal(CopyError::Target(e))
            }
        };
        if let Some(sink) = &self.sink {
            if self
                .dst
                .head_blob(&self.dst_repo, digest)
                .await
                .map_err(target_err)?
            {
                return Ok(Done::Present);
            }
            return self
                .attempt_local(sink.as_ref(), digest, size, counted, slots)
                .await;
        }
        let (url, min_chunk) = match self.session(digest).await.map_err(target_err)? {
            Start::Done(done) => return Ok(done),
            Start::Upload(url, min_chunk) => (url, min_chunk),
        };
        let _moving = metrics::TransferInFlight::start();

        let (body, failure) = match self.source_body(digest, size, counted, slots, true).await {
            Ok(b) => b,
            Err(e) => {
                self.dst.cancel_upload(&self.dst_repo, &url).await;
                return Err(e);
            }
        };
        let put = if self.dst.chunked_only() {
            self.dst
                .upload_chunked(&self.dst_repo, &url, min_chunk, digest, Box::pin(body))
                .await
        } else {
            self.dst
                .put_upload(&self.dst_repo, &url, digest, size, body)
                .await
        };
        let source_failure = match failure.lock() {
            Ok(mut f) => f.take(),
            Err(p) => p.into_inner().take(),
        };
        match (source_failure, put) {
            (Some(f), _) => {
                self.dst.cancel_upload(&self.dst_repo, &url).await;
                let e = CopyError::Source(f.error);
                Err(if f.restart {
                    BlobFailure::Restart(e)
                } else {
                    BlobFailure::Fatal(e)
                })
            }
            (None, Err(e)) => {
                self.dst.cancel_upload(&self.dst_repo, &url).await;
                if let OciError::Status {
                    status: 411 | 413, ..
                } = e
                {
                    self.dst.set_chunked_only();
                    return Err(BlobFailure::Restart(CopyError::Target(e)));
                }
                Err(target_err(e))
            }
            (None, Ok(())) => Ok(Done::Transferred),
        }
    }
}

impl BlobCopy {
    /// The upload session for a blob the target repository may lack, or how it turned out
    /// not to be needed.
    ///
    /// The session's `POST` asks for a mount. From another registry it is also the presence
    /// check: it names the target repository itself, which a registry that has the blob there
    /// answers 201 (as a HEAD would 200), and one that lacks it, or does not mount, answers
    /// with the session (202). A missing blob then costs two requests, not three (HEAD 404,
    /// POST, PUT), which is a third of the requests a registry serves for small blobs. A
    /// registry that refuses that question (any error but a transient one; the plain session
    /// that follows needs no more than the mount's own scopes) is not asked it again: its
    /// client remembers, and its blobs get the HEAD and a plain session from then on, which
    /// is never wrong, only one request more per missing blob. From the same registry, after
    /// a HEAD, the mount is a real one from the source repository; a refused one falls back
    /// to a plain session.
    async fn session(&self, digest: &Digest) -> Result<Start, OciError> {
        let same = self.src.same_registry(&self.dst);
        let probe = !same && self.dst.presence_mounts();
        let present = || async { self.dst.head_blob(&self.dst_repo, digest).await };
        if !probe && present().await? {
            return Ok(Start::Done(Done::Present));
        }
        if same || probe {
            let (from, mounted) = if same {
                (&self.src_repo, Done::Mounted)
            } else {
                (&self.dst_repo, Done::Present)
            };
            match self
                .dst
                .start_upload(&self.dst_repo, Some((digest, from)))
                .await
            {
                Ok(UploadStart::Mounted) => {
                    tracing::debug!(%digest, %from, to = %self.dst_repo, ?mounted, "blob mounted");
                    return Ok(Start::Done(mounted));
                }
                Ok(UploadStart::Session { url, min_chunk }) => {
                    return Ok(Start::Upload(url, min_chunk))
                }
                Err(e) => {
                    tracing::debug!(%digest, %from, error = %e, "mount refused: a plain upload instead");
                    if probe && !e.is_transient() {
                        self.dst.refuse_presence_mounts();
                    }
                }
            }
            if probe && present().await? {
                return Ok(Start::Done(Done::Present));
            }
        }
        Ok(match self.dst.start_upload(&self.dst_repo, None).await? {
            UploadStart::Session { url, min_chunk } => Start::Upload(url, min_chunk),
            UploadStart::Mounted => Start::Done(Done::Mounted),
        })
    }

    /// The source's body of the blob as the stream the target reads: size checked, resumed
    /// with `Range` after a break, and (with `hash`) its digest checked before the last byte
    /// leaves. Source failures met while it is read are left in the returned slot.
    async fn source_body(
        &self,
        digest: &Digest,
        size: u64,
        counted: Arc<AtomicU64>,
        slots: Slots,
        hash: bool,
    ) -> Result<(BlobBody, Arc<Mutex<Option<SourceFailure>>>), BlobFailure> {
        let resp = match self.src.get_blob(&self.src_repo, digest).await {
            Ok(r) => r,
            Err(e) => {
                let restart = e.is_transient();
                let e = CopyError::Source(e);
                return Err(if restart {
                    BlobFailure::Restart(e)
                } else {
                    BlobFailure::Fatal(e)
                });
            }
        };
        if let Some(len) = resp.content_length() {
            if len != size {
                return Err(BlobFailure::Fatal(CopyError::Source(
                    OciError::SizeMismatch {
                        registry: self.src.name().to_owned(),
                        what: format!("blob {digest}"),
                        expected: size,
                        actual: len,
                    },
                )));
            }
        }
        let failure: Arc<Mutex<Option<SourceFailure>>> = Arc::new(Mutex::new(None));
        let verifier = VerifyState {
            src: self.src.clone(),
            repo: self.src_repo.clone(),
            inner: resp.bytes_stream().boxed(),
            hasher: hash.then(|| Hasher::new(digest.algorithm())),
            seen: 0,
            since_connect: 0,
            resumes: 0,
            stalls: 0,
            size,
            digest: digest.clone(),
            progress: self.progress.clone(),
            counted,
            failure: failure.clone(),
            slots: Some(slots),
        };
        Ok((
            stream::try_unfold(verifier, VerifyState::next).boxed(),
            failure,
        ))
    }

    /// One attempt into the in-process sink (the built-in registry): the source's stream goes
    /// straight to its upload path, which checks the digest (the one hash of the copy; over
    /// HTTP both sides hash) and stores nothing on any error.
    async fn attempt_local(
        &self,
        sink: &dyn BlobSink,
        digest: &Digest,
        size: u64,
        counted: Arc<AtomicU64>,
        slots: Slots,
    ) -> Result<Done, BlobFailure> {
        let _moving = metrics::TransferInFlight::start();
        let (body, failure) = self
            .source_body(digest, size, counted, slots, false)
            .await?;
        let put = sink.put_blob(&self.dst_repo, digest, size, body).await;
        let source_failure = match failure.lock() {
            Ok(mut f) => f.take(),
            Err(p) => p.into_inner().take(),
        };
        match (source_failure, put) {
            (Some(f), _) => {
                let e = CopyError::Source(f.error);
                Err(if f.restart {
                    BlobFailure::Restart(e)
                } else {
                    BlobFailure::Fatal(e)
                })
            }
            // The sink's digest check is the copy's: a mismatch is the source's content.
            (
                None,
                Err(OciError::DigestMismatch {
                    expected, actual, ..
                }),
            ) => Err(BlobFailure::Fatal(CopyError::Source(
                OciError::DigestMismatch {
                    registry: self.src.name().to_owned(),
                    what: format!("blob {digest}"),
                    expected,
                    actual,
                },
            ))),
            (None, Err(e)) if e.is_transient() => Err(BlobFailure::Restart(CopyError::Target(e))),
            (None, Err(e)) => Err(BlobFailure::Fatal(CopyError::Target(e))),
            (None, Ok(())) => Ok(Done::Transferred),
        }
    }
}

/// Transfer slots held by one blob attempt.
pub(super) struct Slots(#[allow(dead_code)] Vec<tokio::sync::OwnedSemaphorePermit>);
