//! Upload sessions: bytes streamed to `uploads/<uuid>` with a running sha256 kept in memory, so
//! finishing never re-reads the file (except for a sha512 digest the session did not expect).

use std::collections::HashMap;
use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use futures::StreamExt;
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};
use uuid::Uuid;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::storage::{self, Disk};

/// Write buffer between the request body and the file: few, large writes to the blocking pool.
const WRITE_BUF: usize = 1 << 20;

/// The default of how long a session nobody touches lives: then it is cancelled and its file
/// removed (swept at every session start and periodically by the embedder
/// through [`crate::Registry::sweep_uploads`]).
pub const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

pub(crate) struct Session {
    pub(crate) id: Uuid,
    /// Full repository name the session was started in.
    pub(crate) repo: String,
    pub(crate) path: PathBuf,
    pub(crate) state: tokio::sync::Mutex<State>,
    /// Mirror of `State::size` for status requests while a PATCH holds the state.
    size: AtomicU64,
    touched: Mutex<Instant>,
}

pub(crate) struct State {
    /// The upload file, opened by the first append and kept: every write of the session goes
    /// through this one handle, so a write still in flight from a request that was dropped
    /// (client gone) is finished before the next request's seek, never after its writes.
    file: Option<tokio::fs::File>,
    pub(crate) size: u64,
    sha256: Hasher,
    /// A second running hash, when the algorithm of the final digest is known up front
    /// (single-POST upload with `?digest=sha512:…`).
    extra: Option<Hasher>,
    /// Finished or cancelled: requests that waited for the lock must answer 404.
    pub(crate) closed: bool,
}

impl State {
    /// Drops the open file handle (before the file is removed).
    pub(crate) fn close_file(&mut self) {
        self.file = None;
    }
}

impl Session {
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        if let Ok(mut t) = self.touched.lock() {
            *t = Instant::now();
        }
    }

    fn idle_for(&self) -> Duration {
        self.touched.lock().map(|t| t.elapsed()).unwrap_or_default()
    }
}

/// Why appending a request body failed. The session is rolled back to its previous size.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppendError {
    #[error("request body: {0}")]
    Body(axum::Error),
    #[error("body length {got} differs from the declared {expected}")]
    Length { expected: u64, got: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub(crate) struct Uploads {
    sessions: Mutex<HashMap<Uuid, Arc<Session>>>,
    idle_timeout: Duration,
}

impl Uploads {
    pub(crate) fn new(idle_timeout: Duration) -> Self {
        Self {
            sessions: Mutex::default(),
            idle_timeout,
        }
    }

    /// A new session. `register: false` makes an anonymous one for a single-POST upload.
    pub(crate) fn create(
        &self,
        dir: &Path,
        repo: &str,
        extra: Option<Algorithm>,
        register: bool,
    ) -> Arc<Session> {
        let id = Uuid::new_v4();
        let session = Arc::new(Session {
            id,
            repo: repo.to_owned(),
            path: dir.join(id.to_string()),
            state: tokio::sync::Mutex::new(State {
                file: None,
                size: 0,
                sha256: Algorithm::Sha256.hasher(),
                extra: extra
                    .filter(|a| *a != Algorithm::Sha256)
                    .map(Algorithm::hasher),
                closed: false,
            }),
            size: AtomicU64::new(0),
            touched: Mutex::new(Instant::now()),
        });
        if register {
            if let Ok(mut m) = self.sessions.lock() {
                m.insert(id, session.clone());
            }
        }
        session
    }

    pub(crate) fn get(&self, id: &Uuid) -> Option<Arc<Session>> {
        let s = self.sessions.lock().ok()?.get(id).cloned()?;
        s.touch();
        Some(s)
    }

    /// Forgets the session (its lock holder marks it closed and deletes the file).
    pub(crate) fn remove(&self, id: &Uuid) {
        if let Ok(mut m) = self.sessions.lock() {
            m.remove(id);
        }
    }

    /// Cancels sessions idle for longer than the idle timeout whose state is not in use, and
    /// removes their files; returns how many.
    pub(crate) async fn sweep(&self) -> usize {
        let stale: Vec<Arc<Session>> = match self.sessions.lock() {
            Ok(m) => m
                .values()
                .filter(|s| s.idle_for() > self.idle_timeout)
                .cloned()
                .collect(),
            Err(_) => return 0,
        };
        let mut cancelled = 0;
        for s in stale {
            let Ok(mut st) = s.state.try_lock() else {
                continue;
            };
            st.closed = true;
            st.file = None;
            self.remove(&s.id);
            let _ = tokio::fs::remove_file(&s.path).await;
            cancelled += 1;
        }
        cancelled
    }
}

/// Appends `body` to the session's file and hashes it. With `expected`, the body must be exactly
/// that long. The state changes only when the whole body is in: on a failure (or when the
/// request is dropped mid-body) the session keeps its previous size and hashes, and bytes past
/// that size in the file are overwritten by the next append or cut by [`seal`].
pub(crate) async fn append(
    session: &Session,
    st: &mut State,
    body: Body,
    expected: Option<u64>,
) -> Result<u64, AppendError> {
    let mut sha256 = st.sha256.clone();
    let mut extra = st.extra.clone();
    let start = st.size;
    let file = open(session, &mut st.file).await?;
    file.seek(SeekFrom::Start(start)).await?;
    let mut w = BufWriter::with_capacity(WRITE_BUF, file);
    let mut written = 0u64;
    let mut stream = body.into_data_stream();
    let result: Result<(), AppendError> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(AppendError::Body)?;
            written += chunk.len() as u64;
            if let Some(expected) = expected.filter(|e| written > *e) {
                return Err(AppendError::Length {
                    expected,
                    got: written,
                });
            }
            sha256.update(&chunk);
            if let Some(h) = extra.as_mut() {
                h.update(&chunk);
            }
            w.write_all(&chunk).await?;
        }
        w.flush().await?;
        match expected {
            Some(expected) if written != expected => Err(AppendError::Length {
                expected,
                got: written,
            }),
            _ => Ok(()),
        }
    }
    .await;
    match result {
        Ok(()) => {
            drop(w);
            st.sha256 = sha256;
            st.extra = extra;
            st.size = start + written;
            session.size.store(st.size, Ordering::Relaxed);
            session.touch();
            Ok(written)
        }
        Err(e) => {
            // The buffered rest is dropped; what reached the file is cut off again.
            let file = w.into_inner();
            let _ = file.flush().await;
            let _ = file.set_len(start).await;
            Err(e)
        }
    }
}

async fn open<'a>(
    session: &Session,
    slot: &'a mut Option<tokio::fs::File>,
) -> io::Result<&'a mut tokio::fs::File> {
    if slot.is_none() {
        let f = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&session.path)
            .await?;
        *slot = Some(f);
    }
    match slot.as_mut() {
        Some(f) => Ok(f),
        None => Err(io::Error::other("upload file not open")),
    }
}

/// Deletes an upload file when dropped: a request dropped mid-way (client gone) leaves nothing.
/// After a commit the file has been renamed away and the removal finds nothing.
pub(crate) struct RemoveOnDrop(pub(crate) PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The digest of everything uploaded, in `algorithm`: from the running hashes when possible,
/// else by reading the file once.
pub(crate) async fn digest(
    session: &Session,
    st: &State,
    algorithm: Algorithm,
) -> io::Result<Digest> {
    if algorithm == Algorithm::Sha256 {
        return Ok(st.sha256.clone().finish());
    }
    if let Some(h) = &st.extra {
        let d = h.clone().finish();
        if d.algorithm() == algorithm {
            return Ok(d);
        }
    }
    if st.size == 0 {
        return Ok(algorithm.digest_of(b""));
    }
    storage::hash_file(&session.path, st.size, algorithm).await
}

/// Makes the session's file exactly `st.size` bytes long (creating it for an empty upload), so
/// what gets committed is exactly what was hashed, and closes it.
pub(crate) async fn seal(session: &Session, st: &mut State) -> io::Result<()> {
    let size = st.size;
    let file = open(session, &mut st.file).await?;
    file.flush().await?;
    if file.metadata().await?.len() != size {
        file.set_len(size).await?;
    }
    st.file = None;
    Ok(())
}

/// Why [`finish`] stored nothing.
#[derive(Debug)]
pub(crate) enum FinishError {
    /// The bytes hash to `computed`, not to the digest given.
    Mismatch { computed: Digest },
    /// `what` failed on the file system.
    Io(&'static str, io::Error),
}

/// Verifies the uploaded bytes against `d`, moves them into the store and links the blob to
/// `repo`: the end of every upload, over HTTP or in-process. On a mismatch nothing is stored.
pub(crate) async fn finish(
    store: &Disk,
    session: &Session,
    st: &mut State,
    d: &Digest,
    repo: &str,
) -> Result<(), FinishError> {
    let computed = digest(session, st, d.algorithm())
        .await
        .map_err(|e| FinishError::Io("hash upload", e))?;
    if computed != *d {
        return Err(FinishError::Mismatch { computed });
    }
    seal(session, st)
        .await
        .map_err(|e| FinishError::Io("finish upload", e))?;
    store
        .commit_blob(&session.path, d, repo)
        .await
        .map_err(|e| FinishError::Io("commit blob", e))
}
