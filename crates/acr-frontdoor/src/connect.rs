//! A forward proxy that makes the login servers reachable with no DNS and no root:
//! `HTTPS_PROXY=http://127.0.0.1:3128` and every client (az, the SDKs, skopeo, crane, docker)
//! reaches `https://myregistry.azurecr.io/…` unchanged.
//!
//! It accepts exactly one thing: `CONNECT <login server>:<port>` for the login server of a
//! registry that exists (or the suffix itself), which it tunnels to the registries' TLS
//! listener. Everything else is refused with `403` and logged: another host, an IP address,
//! plain-HTTP proxying, a registry that does not exist. It is never an open proxy.

use std::future::Future;
use std::net::SocketAddr;

use acr_store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::host::login_server_name;

/// The longest request head read before refusing.
const HEAD_MAX: usize = 8 << 10;

/// Serves the proxy on `listener` until `stop` completes.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    suffix: String,
    tls_addr: SocketAddr,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept() => a,
        };
        let Ok((conn, peer)) = accepted else { continue };
        let store = store.clone();
        let suffix = suffix.clone();
        tokio::spawn(async move {
            if let Err(e) = tunnel(conn, peer, &store, &suffix, tls_addr).await {
                tracing::debug!(%peer, error = %e, "proxy connection ended");
            }
        });
    }
}

/// What a proxy request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Tunnel to the TLS listener.
    Tunnel,
    /// Refuse, saying why.
    Refuse(String),
}

/// Decides a request line (`CONNECT host:port HTTP/1.1`), given whether `registry_exists`.
pub async fn decide<F, Fut>(line: &str, suffix: &str, registry_exists: F) -> Decision
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut words = line.split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Decision::Refuse("not an HTTP request".into());
    };
    if !method.eq_ignore_ascii_case("CONNECT") {
        return Decision::Refuse(format!(
            "only CONNECT to a login server (*.{suffix}) is proxied, not {method}"
        ));
    }
    let host = match target.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => return Decision::Refuse(format!("'{target}' is not host:port")),
    };
    let host = host.to_ascii_lowercase();
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return Decision::Refuse(format!("'{host}' is an IP address, not a login server"));
    }
    if host == suffix {
        return Decision::Tunnel;
    }
    match login_server_name(&host, suffix) {
        Some(name) if host == format!("{name}.{suffix}") => {
            if registry_exists(name.clone()).await {
                Decision::Tunnel
            } else {
                Decision::Refuse(format!("no registry '{name}' exists"))
            }
        }
        _ => Decision::Refuse(format!("'{host}' is not a login server (*.{suffix})")),
    }
}

async fn tunnel(
    mut conn: TcpStream,
    peer: SocketAddr,
    store: &Store,
    suffix: &str,
    tls_addr: SocketAddr,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let end = loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > HEAD_MAX {
            return refuse(&mut conn, peer, "", "the request head is too large").await;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let line = text.lines().next().unwrap_or_default().to_owned();
    let decision = decide(&line, suffix, |name| async move {
        matches!(store.get_registry_by_name(&name).await, Ok(Some(r)) if !r.deleting())
    })
    .await;
    match decision {
        Decision::Refuse(why) => refuse(&mut conn, peer, &line, &why).await,
        Decision::Tunnel => {
            let mut upstream = TcpStream::connect(tls_addr).await?;
            conn.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await?;
            // Bytes the client sent after the head (a TLS ClientHello) go first.
            if end < head.len() {
                upstream.write_all(&head[end..]).await?;
            }
            tracing::debug!(%peer, request = %line, "proxy: tunnel to the login servers");
            tokio::io::copy_bidirectional(&mut conn, &mut upstream).await?;
            Ok(())
        }
    }
}

async fn refuse(
    conn: &mut TcpStream,
    peer: SocketAddr,
    line: &str,
    why: &str,
) -> std::io::Result<()> {
    tracing::warn!(%peer, request = %line, reason = %why, "proxy: refused");
    let body = format!("acr-import proxy: refused: {why}\n");
    let resp = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn d(line: &str) -> Decision {
        decide(
            line,
            "azurecr.io",
            |name| async move { name == "myregistry" },
        )
        .await
    }

    #[tokio::test]
    async fn only_connect_to_existing_login_servers() {
        assert_eq!(
            d("CONNECT myregistry.azurecr.io:443 HTTP/1.1").await,
            Decision::Tunnel
        );
        assert_eq!(
            d("CONNECT MyRegistry.AzureCR.io:443 HTTP/1.1").await,
            Decision::Tunnel
        );
        assert_eq!(d("CONNECT azurecr.io:443 HTTP/1.1").await, Decision::Tunnel);
        for refused in [
            "CONNECT otherregistry.azurecr.io:443 HTTP/1.1",
            "CONNECT example.com:443 HTTP/1.1",
            "CONNECT 127.0.0.1:8080 HTTP/1.1",
            "CONNECT [::1]:443 HTTP/1.1",
            "CONNECT myregistry.azurecr.io HTTP/1.1",
            "CONNECT a.myregistry.azurecr.io:443 HTTP/1.1",
            "GET http://myregistry.azurecr.io/v2/ HTTP/1.1",
            "garbage",
        ] {
            assert!(
                matches!(d(refused).await, Decision::Refuse(_)),
                "{refused} was not refused"
            );
        }
    }
}
