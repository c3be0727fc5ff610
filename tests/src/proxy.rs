//! A TCP proxy on 127.0.0.1:0 with an optional bandwidth limit on the response direction
//! (upstream → client), shared by all connections. Used to slow a copy down so a test can
//! observe or interrupt an operation while it runs. The limit can be changed at run time
//! (e.g. lifted once the test has seen what it needed). Stops, with every connection, on Drop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;

struct Shared {
    target: SocketAddr,
    /// bytes per second; 0 = unlimited
    rate: AtomicU64,
    to_client: AtomicU64,
    to_upstream: AtomicU64,
    connections: AtomicUsize,
    /// when the shared pipe is next free (pacing across connections)
    next_free: Mutex<Instant>,
}

pub struct ThrottleProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ThrottleProxy {
    /// Proxies 127.0.0.1:<random> → `target` (e.g. a registry's `127.0.0.1:PORT`).
    /// `rate`: bytes per second for upstream → client, `None` for unlimited.
    pub async fn start(target: &str, rate: Option<u64>) -> Self {
        let target: SocketAddr = target.parse().expect("proxy target is ip:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            target,
            rate: AtomicU64::new(rate.unwrap_or(0)),
            to_client: AtomicU64::new(0),
            to_upstream: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            next_free: Mutex::new(Instant::now()),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            // Connection tasks live in the JoinSet: aborting this task drops (aborts) them all.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        s.connections.fetch_add(1, Ordering::SeqCst);
                        conns.spawn(handle(client, s.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Self { shared, addr, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `127.0.0.1:PORT`, usable as an import's `registryUri`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
    /// Changes the limit (`None` = unlimited) for everything sent from now on.
    pub fn set_rate(&self, rate: Option<u64>) {
        self.shared.rate.store(rate.unwrap_or(0), Ordering::SeqCst);
    }
    /// Bytes forwarded upstream → client so far.
    pub fn bytes_to_client(&self) -> u64 {
        self.shared.to_client.load(Ordering::SeqCst)
    }
    /// Bytes forwarded client → upstream so far.
    pub fn bytes_to_upstream(&self) -> u64 {
        self.shared.to_upstream.load(Ordering::SeqCst)
    }
    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for ThrottleProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(client: TcpStream, shared: Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect(shared.target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let up = {
        let shared = shared.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        shared.to_upstream.fetch_add(n as u64, Ordering::SeqCst);
                    }
                }
            }
            let _ = uw.shutdown().await;
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let rate = shared.rate.load(Ordering::SeqCst);
            // Small reads when limited, so pacing stays smooth (~20 slices per second).
            let max = if rate == 0 {
                buf.len()
            } else {
                ((rate / 20) as usize).clamp(512, buf.len())
            };
            match ur.read(&mut buf[..max]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    pace(&shared, n as u64).await;
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    shared.to_client.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Reserves `n` bytes of the shared budget and waits for the slot (pacing, not waiting for
/// an event).
async fn pace(shared: &Shared, n: u64) {
    let rate = shared.rate.load(Ordering::SeqCst);
    if rate == 0 {
        return;
    }
    let slot = {
        let mut next = shared.next_free.lock().await;
        let now = Instant::now();
        let start = if *next > now { *next } else { now };
        *next = start + Duration::from_secs_f64(n as f64 / rate as f64);
        start
    };
    tokio::time::sleep_until(slot).await;
}
