//! What `/health/ready` checks besides the store (the probes of [`acr_api::health`]) and the
//! one line on standard output that says every listener is up.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use acr_api::health::{Probe, Readiness, PROBE_TIMEOUT};
use futures::future::BoxFuture;
use url::Url;

/// The registry the copies write into: `GET /v2/` answers 200 or 401 (the built-in registry's
/// internal listener, or the external backend).
struct RegistryProbe {
    name: &'static str,
    http: reqwest::Client,
    url: Url,
}

impl Probe for RegistryProbe {
    fn name(&self) -> &'static str {
        self.name
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let resp = self
                .http
                .get(self.url.clone())
                .timeout(PROBE_TIMEOUT)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "GET {} failed: {}",
                        self.url,
                        acr_oci::error::describe_reqwest(e)
                    )
                })?;
            let status = resp.status();
            if status.is_success() || status.as_u16() == 401 {
                Ok(())
            } else {
                Err(format!("GET {} answered {status}", self.url))
            }
        })
    }
}

/// The login servers' plain listener answers HTTP (any status: `/v2/` asks for a token).
struct ListenerProbe {
    http: reqwest::Client,
    url: String,
}

impl Probe for ListenerProbe {
    fn name(&self) -> &'static str {
        "login-servers"
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.http
                .get(&self.url)
                .timeout(PROBE_TIMEOUT)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    format!(
                        "GET {} failed: {}",
                        self.url,
                        acr_oci::error::describe_reqwest(e)
                    )
                })
        })
    }
}

struct WorkersProbe(acr_worker::Heartbeat);

impl Probe for WorkersProbe {
    fn name(&self) -> &'static str {
        "workers"
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.check() })
    }
}

/// The probes: the workers, the registry they write into, the login servers.
pub fn readiness(
    workers: acr_worker::Heartbeat,
    backend_http: reqwest::Client,
    backend_url: &Url,
    builtin: bool,
    login_plain: SocketAddr,
) -> anyhow::Result<Readiness> {
    let url = backend_url
        .join("v2/")
        .map_err(|e| anyhow::anyhow!("backend URL: {e}"))?;
    // The probe of our own listener must not go through a proxy the environment names.
    let direct = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| anyhow::anyhow!("HTTP client: {e}"))?;
    Ok(Readiness::default()
        .with(Arc::new(WorkersProbe(workers)))
        .with(Arc::new(RegistryProbe {
            name: if builtin { "registry" } else { "backend" },
            http: if builtin {
                direct.clone()
            } else {
                backend_http
            },
            url,
        }))
        .with(Arc::new(ListenerProbe {
            http: direct,
            url: format!("http://{}/v2/", crate::config::connect_addr(login_plain)),
        })))
}

/// The listeners named in the ready line (each as bound: a port 0 resolved).
#[derive(Debug, Default)]
pub struct Listeners {
    pub arm: Option<SocketAddr>,
    pub arm_tls: Option<SocketAddr>,
    pub registry: Option<SocketAddr>,
    pub registry_tls: Option<SocketAddr>,
    pub proxy: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

impl Listeners {
    /// `acr-import ready: arm=http://…, arm-tls=https://…, registry=http://…, …`: the listeners
    /// that exist, in this order. Wrappers wait for the prefix `acr-import ready: `; the line
    /// is printed once, when every listener accepts connections.
    pub fn line(&self) -> String {
        let parts = [
            ("arm", "http", self.arm),
            ("arm-tls", "https", self.arm_tls),
            ("registry", "http", self.registry),
            ("registry-tls", "https", self.registry_tls),
            ("proxy", "http", self.proxy),
            ("metrics", "http", self.metrics),
        ];
        let fields: Vec<String> = parts
            .iter()
            .filter_map(|(name, scheme, addr)| addr.map(|a| format!("{name}={scheme}://{a}")))
            .collect();
        format!("acr-import ready: {}", fields.join(", "))
    }

    /// Prints [`Listeners::line`] on standard output and flushes it (logs go to stderr).
    pub fn announce(&self) {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{}", self.line())
            .and_then(|()| out.flush())
            .is_err()
        {
            tracing::warn!("cannot write the ready line to standard output");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_names_what_exists_in_order() {
        let l = Listeners {
            arm: Some("127.0.0.1:8080".parse().expect("address")),
            registry: Some("0.0.0.0:5000".parse().expect("address")),
            registry_tls: Some("[::1]:5443".parse().expect("address")),
            ..Listeners::default()
        };
        assert_eq!(
            l.line(),
            "acr-import ready: arm=http://127.0.0.1:8080, registry=http://0.0.0.0:5000, registry-tls=https://[::1]:5443"
        );
    }
}
