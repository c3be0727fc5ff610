//! The proxy's two servers: [`FaultProxy`] (its listeners, accessors, rules and counters) and
//! the accept loop.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::handle::handle;
use super::redirect::handle_redirect_target;
use super::state::{RuleSlot, Shared, State};
use super::{Kind, KindStats, LogEntry, RedirectHit, Rule, RuleId};
use crate::oci::{Credentials, OciClient};

pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    redirect_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy on 127.0.0.1:<random> in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Self {
        Self::start_with_credentials(upstream, None).await
    }

    /// Like [`start`](Self::start); the redirect target authenticates to the upstream with
    /// `creds` (Basic or a token, whatever the upstream asks for).
    pub async fn start_with_credentials(upstream: &str, creds: Option<Credentials>) -> Self {
        let upstream = upstream.trim_end_matches('/').to_string();
        assert!(
            upstream.starts_with("http://"),
            "FaultProxy upstream must be http://HOST:PORT, got {upstream:?}"
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fault proxy");
        let addr = listener.local_addr().expect("fault proxy addr");
        let redirect_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind redirect target");
        let redirect_addr = redirect_listener.local_addr().expect("redirect addr");
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(16)
            .build()
            .expect("build proxy client");
        let shared = Arc::new(Shared {
            started: std::time::Instant::now(),
            redirect_client: OciClient::new(&upstream, creds),
            upstream,
            base: format!("http://{addr}"),
            redirect_base: format!("http://{redirect_addr}"),
            http,
            state: Mutex::new(State::default()),
        });
        let main = {
            let shared = shared.clone();
            serve(listener, move |req| handle(shared.clone(), req))
        };
        let redirect = {
            let shared = shared.clone();
            serve(redirect_listener, move |req| {
                handle_redirect_target(shared.clone(), req)
            })
        };
        Self {
            shared,
            addr,
            redirect_addr,
            tasks: vec![tokio::spawn(main), tokio::spawn(redirect)],
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `127.0.0.1:PORT`, usable as an import's `registryUri`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
    /// `http://127.0.0.1:PORT`, usable as `--backend-registry`.
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }
    /// The upstream this proxy forwards to.
    pub fn upstream(&self) -> &str {
        &self.shared.upstream
    }
    /// `http://127.0.0.1:PORT` of the server [`Action::Redirect`](super::Action::Redirect)
    /// points blob GETs at.
    pub fn redirect_target(&self) -> String {
        self.shared.redirect_base.clone()
    }
    pub fn redirect_addr(&self) -> SocketAddr {
        self.redirect_addr
    }

    /// Adds a rule (applies to requests arriving from now on).
    pub fn add_rule(&self, rule: Rule) -> RuleId {
        let mut st = self.shared.lock();
        st.next_rule += 1;
        let id = RuleId(st.next_rule);
        st.rules.push(RuleSlot {
            id,
            rule,
            seen: 0,
            fired: 0,
        });
        id
    }
    pub fn remove_rule(&self, id: RuleId) {
        self.shared.lock().rules.retain(|r| r.id != id);
    }
    pub fn clear_rules(&self) {
        self.shared.lock().rules.clear();
    }
    /// How many times rule `id` fired (0 once removed).
    pub fn rule_hits(&self, id: RuleId) -> usize {
        self.shared
            .lock()
            .rules
            .iter()
            .find(|r| r.id == id)
            .map_or(0, |r| r.fired)
    }

    /// Counters of `kind`.
    pub fn stats(&self, kind: Kind) -> KindStats {
        self.shared
            .lock()
            .stats
            .get(&kind)
            .copied()
            .unwrap_or_default()
    }
    /// Counters of every kind seen.
    pub fn all_stats(&self) -> HashMap<Kind, KindStats> {
        self.shared.lock().stats.clone()
    }
    pub fn count(&self, kind: Kind) -> u64 {
        self.stats(kind).count
    }
    /// Response body bytes sent to the client for `kind`.
    pub fn bytes_sent(&self, kind: Kind) -> u64 {
        self.stats(kind).response_bytes
    }
    pub fn max_in_flight(&self, kind: Kind) -> u64 {
        self.stats(kind).max_in_flight
    }
    /// Every request so far, in arrival order.
    pub fn log(&self) -> Vec<LogEntry> {
        self.shared.lock().log.clone()
    }
    /// The requests of `kind`.
    pub fn log_of(&self, kind: Kind) -> Vec<LogEntry> {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|e| e.kind == kind)
            .cloned()
            .collect()
    }
    /// The log, one request per line (for assertion messages).
    pub fn log_text(&self) -> String {
        self.log()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
    /// Forgets counters, the log, PATCH sessions and redirect hits (rules stay).
    pub fn reset_stats(&self) {
        let mut st = self.shared.lock();
        st.stats.clear();
        st.log.clear();
        st.redirect_hits.clear();
        st.patch_sizes.clear();
        st.chunk_violations.clear();
    }
    /// Requests the redirect target received.
    pub fn redirect_hits(&self) -> Vec<RedirectHit> {
        self.shared.lock().redirect_hits.clone()
    }
    /// PATCHes that followed a PATCH smaller than `OCI-Chunk-Min-Length` in one session.
    pub fn chunk_violations(&self) -> Vec<String> {
        self.shared.lock().chunk_violations.clone()
    }
    /// Sizes of the PATCHes forwarded per upload session (path without query).
    pub fn patch_sizes(&self) -> HashMap<String, Vec<u64>> {
        self.shared.lock().patch_sizes.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Accept loop; connections live in a JoinSet so aborting the loop aborts them all.
async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}
