//! Small shared helpers: ports, digests, HTTP clients, polling with a deadline.

use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1, for a child process to listen on.
///
/// It is drawn below the kernel's ephemeral range (`ip_local_port_range`), checked by binding
/// it, and never handed out twice by this process. A port from the ephemeral range (what
/// binding port 0 gives) can be taken, between the choice and the child's bind, by the local
/// end of any outgoing connection the tests make: CI once failed that way ("Address already in
/// use" for a service's login servers).
pub fn free_port() -> u16 {
    use rand::Rng;
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOW: u16 = 10_000;
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    if ephemeral_low > LOW + 1000 {
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let port = rng.gen_range(LOW..ephemeral_low);
            if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            given.insert(port);
            return port;
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    given.insert(port);
    port
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    format!("sha256:{}", hex::encode(d.as_ref()))
}

/// Incremental SHA-256 producing `sha256:<hex>`.
pub struct Sha256 {
    ctx: ring::digest::Context,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self {
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }
}

impl Sha256 {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.ctx.update(bytes);
    }
    pub fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.ctx.finish().as_ref()))
    }
}

/// An HTTP client that never goes through a proxy (tests only talk to 127.0.0.1).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(4)
        .build()
        .expect("build reqwest client")
}

/// Polls `probe` every `interval` until it yields `Some`, or panics after `timeout` with `what`.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// The last `lines` lines of a text file (empty when it can't be read).
pub fn tail_file(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// Random lowercase alphanumeric suffix for names.
pub fn random_suffix(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}
