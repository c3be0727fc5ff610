//! Writes: manifest PUTs and blob uploads. An upload starts with a session (or a
//! cross-repository mount), then goes as one streaming `PUT` with `Content-Length` watched on
//! the registry's side only (the upload watch: time the body waits for its source never
//! counts), or as chunked `PATCH`es (≥ max(5 MiB, `OCI-Chunk-Min-Length`), newest `Location`,
//! 416 recovered from the session status) for registries that refuse a monolithic one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acr_core::reference::{Digest, Repository};
use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use url::Url;

use super::{RegistryClient, Scopes};
use crate::error::OciError;

/// Result of starting an upload.
#[derive(Debug)]
pub enum UploadStart {
    /// The blob was mounted from another repository: nothing to upload.
    Mounted,
    /// An upload session to PUT (or PATCH) to, with the registry's `OCI-Chunk-Min-Length`.
    Session { url: Url, min_chunk: Option<u64> },
}

impl RegistryClient {
    /// PUT a manifest's exact bytes under a tag or digest.
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        bytes: &Bytes,
        media_type: &str,
    ) -> Result<(), OciError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let scopes = Scopes::push(repo);
        let resp = self
            .send(&scopes, || {
                Ok(self
                    .http
                    .put(url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone()))
            })
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self
                .error_from("PUT", &format!("manifest {repo}:{reference}"), resp)
                .await)
        }
    }

    /// Starts an upload, trying a cross-repository mount first when `mount_from` is given.
    pub async fn start_upload(
        &self,
        repo: &Repository,
        mount_from: Option<(&Digest, &Repository)>,
    ) -> Result<UploadStart, OciError> {
        let mut url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
        let scopes = match mount_from {
            Some((digest, from)) => {
                url.query_pairs_mut()
                    .append_pair("mount", &digest.to_string())
                    .append_pair("from", from.as_str());
                Scopes::mount(repo, from)
            }
            None => Scopes::push(repo),
        };
        let resp = self
            .send(&scopes, || {
                Ok(self.http.post(url.clone()).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount_from.is_some() => Ok(UploadStart::Mounted),
            StatusCode::ACCEPTED => {
                let loc = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        self.invalid("the registry started an upload without a Location header")
                    })?;
                let session = url
                    .join(loc)
                    .map_err(|e| self.invalid(format!("bad upload Location: {e}")))?;
                let min_chunk = resp
                    .headers()
                    .get("oci-chunk-min-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                Ok(UploadStart::Session {
                    url: session,
                    min_chunk,
                })
            }
            _ => Err(self
                .error_from("POST", &format!("upload to {repo}"), resp)
                .await),
        }
    }

    /// Completes an upload session with one streaming PUT of `size` bytes.
    ///
    /// The PUT has no read timeout: while `body` waits for its source, the registry is only
    /// waiting for the body. The stall timeout applies to the registry's side alone: taking
    /// no body byte (`body` has one ready) or giving no answer after the last one for that long
    /// is [`OciError::Stalled`]. A stall of the source is for `body` to detect and report.
    pub async fn put_upload<S>(
        &self,
        repo: &Repository,
        session: &Url,
        digest: &Digest,
        size: u64,
        body: S,
    ) -> Result<(), OciError>
    where
        S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let mut url = session.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let scopes = Scopes::push(repo);
        let watch = Arc::new(UploadWatch::new());
        let body = WatchedBody {
            inner: body.boxed(),
            watch: watch.clone(),
            remaining: size,
        };
        let rb = self
            .authorize(self.upload_http().put(url), &scopes)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(body));
        let send = rb.send();
        tokio::pin!(send);
        let resp = loop {
            tokio::select! {
                r = &mut send => break self.observed(r).map_err(|e| self.network(e))?,
                () = tokio::time::sleep_until(watch.deadline(self.stall_timeout)) => {
                    if let Some((idle, sent)) = watch.target_stalled(self.stall_timeout) {
                        acr_core::metrics::stall(acr_core::metrics::Side::Target);
                        acr_core::metrics::registry_request(self.role(), None);
                        let doing = if sent {
                            "answer after the whole blob was sent"
                        } else {
                            "take any more of the blob"
                        };
                        return Err(OciError::Stalled {
                            registry: self.name.clone(),
                            detail: format!(
                                "the registry stalled: it did not {doing} for {} seconds while blob {repo}@{digest} was uploaded",
                                idle.as_secs()
                            ),
                        });
                    }
                }
            }
        };
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status() == StatusCode::UNAUTHORIZED {
            // The token expired during the upload: renew it so the caller's retry works.
            if let Err(e) = self.on_unauthorized(&resp, &scopes).await {
                tracing::debug!(error = %e, "re-authentication after a refused upload failed");
            }
        }
        Err(self
            .error_from("PUT", &format!("blob {repo}@{digest}"), resp)
            .await)
    }

    /// Uploads a stream in PATCH chunks of at least max(5 MiB, `OCI-Chunk-Min-Length`),
    /// following the newest `Location`, recovering from 416 by asking the session's status, then
    /// PUTs the digest. A failure of `body` is reported as `Invalid` (the caller knows why).
    pub async fn upload_chunked<S>(
        &self,
        repo: &Repository,
        session: &Url,
        min_chunk: Option<u64>,
        digest: &Digest,
        mut body: S,
    ) -> Result<(), OciError>
    where
        S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
    {
        const MIN_CHUNK: u64 = 5 * 1024 * 1024;
        let chunk_size = min_chunk.unwrap_or(0).clamp(MIN_CHUNK, 64 * 1024 * 1024) as usize;
        let scopes = Scopes::push(repo);
        let mut location = session.clone();
        let mut offset: u64 = 0;
        let mut done = false;
        while !done {
            let mut buf = bytes::BytesMut::with_capacity(chunk_size);
            while buf.len() < chunk_size {
                match body.next().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(e)) => {
                        return Err(self.invalid(format!("the source stream failed: {e}")))
                    }
                    None => {
                        done = true;
                        break;
                    }
                }
            }
            let mut chunk = buf.freeze();
            let mut recoveries = 0;
            while !chunk.is_empty() {
                let end = offset + chunk.len() as u64 - 1;
                let url = location.clone();
                let part = chunk.clone();
                let resp = self
                    .send(&scopes, || {
                        Ok(self
                            .http
                            .patch(url.clone())
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header("content-range", format!("{offset}-{end}"))
                            .header(CONTENT_LENGTH, part.len())
                            .body(part.clone()))
                    })
                    .await?;
                match resp.status() {
                    StatusCode::ACCEPTED | StatusCode::NO_CONTENT | StatusCode::CREATED => {
                        location = self.next_location(&location, resp.headers())?;
                        offset = end + 1;
                        chunk = Bytes::new();
                    }
                    StatusCode::RANGE_NOT_SATISFIABLE if recoveries < 3 => {
                        // distribution's 416 lies about its body length: never read it.
                        drop(resp);
                        recoveries += 1;
                        let (loc, committed) = self.upload_status(repo, &location).await?;
                        location = loc;
                        if committed < offset || committed > end + 1 {
                            return Err(self.invalid(format!(
                                "the upload session is at byte {committed}, outside the chunk {offset}-{end}"
                            )));
                        }
                        chunk = chunk.slice((committed - offset) as usize..);
                        offset = committed;
                    }
                    _ => {
                        return Err(self
                            .error_from("PATCH", &format!("blob {repo}@{digest}"), resp)
                            .await)
                    }
                }
            }
        }
        let mut url = location.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let resp = self
            .send(&scopes, || {
                Ok(self.http.put(url.clone()).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self
                .error_from("PUT", &format!("blob {repo}@{digest}"), resp)
                .await)
        }
    }

    fn next_location(&self, current: &Url, headers: &HeaderMap) -> Result<Url, OciError> {
        match headers.get(LOCATION).and_then(|v| v.to_str().ok()) {
            Some(loc) => current
                .join(loc)
                .map_err(|e| self.invalid(format!("bad upload Location: {e}"))),
            None => Ok(current.clone()),
        }
    }

    /// `GET <session>`: the newest Location and how many bytes the registry holds.
    async fn upload_status(
        &self,
        repo: &Repository,
        session: &Url,
    ) -> Result<(Url, u64), OciError> {
        let scopes = Scopes::push(repo);
        let resp = self
            .send(&scopes, || Ok(self.http.get(session.clone())))
            .await?;
        if !resp.status().is_success() {
            return Err(self
                .error_from("GET", &format!("upload status of {repo}"), resp)
                .await);
        }
        let committed = resp
            .headers()
            .get(reqwest::header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| {
                r.trim()
                    .trim_start_matches("bytes=")
                    .split_once('-')
                    .map(|(_, e)| e.trim().to_owned())
            })
            .and_then(|e| e.parse::<u64>().ok())
            // distribution reports an empty session as `0-0`, the same as one byte held; chunks
            // are at least 5 MiB, so `0-0` means nothing was committed.
            .map(|last| if last == 0 { 0 } else { last + 1 })
            .unwrap_or(0);
        let loc = self.next_location(session, resp.headers())?;
        Ok((loc, committed))
    }

    /// Cancels an upload session; failures are ignored (the registry expires sessions anyway).
    pub async fn cancel_upload(&self, repo: &Repository, session: &Url) {
        let scopes = Scopes::push(repo);
        let rb = self.authorize(self.http.delete(session.clone()), &scopes);
        match tokio::time::timeout(Duration::from_secs(10), rb.send()).await {
            Ok(sent) => {
                let _ = self.observed(sent);
            }
            Err(_) => acr_core::metrics::registry_request(self.role(), None),
        }
    }
}

/// What an upload's body is doing, to tell a stalled registry from a slow source.
#[derive(Debug)]
struct UploadWatch(Mutex<WatchState>);

#[derive(Debug, Clone, Copy)]
struct WatchState {
    /// The last time the request body was polled.
    polled: tokio::time::Instant,
    /// The body's last poll was pending: the source has the turn, not the registry.
    waiting_for_source: bool,
    /// The whole body has been handed over: the registry owes the answer.
    ended: bool,
}

impl UploadWatch {
    fn new() -> Self {
        Self(Mutex::new(WatchState {
            polled: tokio::time::Instant::now(),
            waiting_for_source: false,
            ended: false,
        }))
    }

    fn state(&self) -> WatchState {
        match self.0.lock() {
            Ok(s) => *s,
            Err(p) => *p.into_inner(),
        }
    }

    fn polled(&self, waiting_for_source: bool, ended: bool) {
        let mut s = match self.0.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        s.polled = tokio::time::Instant::now();
        s.waiting_for_source = waiting_for_source;
        s.ended = ended;
    }

    /// When the registry will have stalled if nothing happens meanwhile.
    fn deadline(&self, stall: Duration) -> tokio::time::Instant {
        let s = self.state();
        if s.waiting_for_source {
            tokio::time::Instant::now() + stall
        } else {
            s.polled + stall
        }
    }

    /// `Some((idle, body ended))` when the registry has had the turn for `stall` or longer.
    fn target_stalled(&self, stall: Duration) -> Option<(Duration, bool)> {
        let s = self.state();
        let idle = s.polled.elapsed();
        (!s.waiting_for_source && idle >= stall).then_some((idle, s.ended))
    }
}

/// A request body that reports its polls to an [`UploadWatch`].
struct WatchedBody {
    inner: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
    watch: Arc<UploadWatch>,
    /// Bytes of the Content-Length not handed over yet.
    remaining: u64,
}

impl futures::Stream for WatchedBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let next = self.inner.poll_next_unpin(cx);
        if let std::task::Poll::Ready(Some(Ok(b))) = &next {
            self.remaining = self.remaining.saturating_sub(b.len() as u64);
        }
        let ended = self.remaining == 0 || matches!(next, std::task::Poll::Ready(None));
        self.watch.polled(next.is_pending(), ended);
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_watch_blames_only_the_registry() {
        let stall = Duration::from_millis(30);
        let pause = || std::thread::sleep(Duration::from_millis(45));
        let w = UploadWatch::new();
        assert!(w.target_stalled(stall).is_none());
        // The body waits for its source: however long, not the registry's stall.
        w.polled(true, false);
        pause();
        assert!(w.target_stalled(stall).is_none());
        assert!(w.deadline(stall) > tokio::time::Instant::now());
        // The body had a chunk ready and the registry took nothing more.
        w.polled(false, false);
        pause();
        assert_eq!(w.target_stalled(stall).map(|(_, ended)| ended), Some(false));
        // The whole body went and no answer came.
        w.polled(false, true);
        assert!(w.target_stalled(stall).is_none());
        pause();
        assert_eq!(w.target_stalled(stall).map(|(_, ended)| ended), Some(true));
    }
}
