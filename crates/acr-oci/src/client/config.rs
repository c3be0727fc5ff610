//! Settings shared by every registry client of a process: the HTTP clients they share
//! (rustls, redirect policy, SSRF-guarded resolver, extra roots) and registry base URLs.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use acr_core::import::RegistryAddress;
use url::Url;

use crate::error::{describe_reqwest, OciError};
use crate::netguard::{check_url, AddressRefused, NetworkPolicy};

/// Settings shared by every registry client of a process.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` entries reached over plain HTTP (loopback always is).
    pub insecure_registries: Vec<String>,
    pub connect_timeout: Duration,
    /// No byte for this long on a response body aborts it (the stall detector).
    pub read_timeout: Duration,
    /// Attempts per request for transient failures (network, 408, 429, 5xx).
    pub max_attempts: u32,
    /// Blob transfers in flight per registry host, across all operations of the process.
    pub registry_concurrency: usize,
    pub user_agent: String,
    /// SSRF guard for source traffic (`None` for the operator-configured backend).
    pub network_guard: Option<NetworkPolicy>,
    /// Extra trusted CA certificates (PEM bundles) for HTTPS sources (`--source-ca-file`).
    pub extra_roots_pem: Vec<Vec<u8>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            max_attempts: 4,
            registry_concurrency: 4,
            user_agent: concat!("acr-import/", env!("CARGO_PKG_VERSION")).to_owned(),
            network_guard: None,
            extra_roots_pem: Vec::new(),
        }
    }
}

impl ClientConfig {
    /// The HTTP client all registry clients share: rustls, bounded redirects, never https→http,
    /// and `read_timeout`. (reqwest's read timeout also bounds everything before the response
    /// headers, request body included, so streaming uploads use [`Self::build_upload_http`].)
    pub fn build_http(&self) -> Result<reqwest::Client, OciError> {
        self.http_builder()?
            .read_timeout(self.read_timeout)
            .build()
            .map_err(build_error)
    }

    /// The same client without a read timeout, for uploads whose body is a source stream: the
    /// copy engine watches both sides of such an upload itself (see
    /// [`RegistryClient::put_upload`]).
    pub fn build_upload_http(&self) -> Result<reqwest::Client, OciError> {
        self.http_builder()?.build().map_err(build_error)
    }

    fn http_builder(&self) -> Result<reqwest::ClientBuilder, OciError> {
        let guard = self.network_guard;
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            let downgrade = attempt.previous().iter().any(|u| u.scheme() == "https")
                && attempt.url().scheme() != "https";
            if attempt.previous().len() >= 10 {
                attempt.error("too many redirects")
            } else if downgrade {
                attempt.error("refusing a redirect from https to http")
            } else if let Some(refused) = guard.and_then(|g| check_url(&g, attempt.url()).err()) {
                // Names are checked by the resolver when the hop connects.
                attempt.error(refused)
            } else {
                attempt.follow()
            }
        });
        let mut b = reqwest::Client::builder()
            .user_agent(self.user_agent.clone())
            .connect_timeout(self.connect_timeout)
            .redirect(policy);
        if let Some(g) = guard {
            b = b.dns_resolver(Arc::new(crate::netguard::GuardedResolver { policy: g }));
        }
        for pem in &self.extra_roots_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(build_error)?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        Ok(b)
    }

    /// Refuses a source URL whose host is an IP literal the SSRF guard refuses.
    pub fn check_source_url(&self, url: &Url) -> Result<(), AddressRefused> {
        match &self.network_guard {
            Some(g) => check_url(g, url),
            None => Ok(()),
        }
    }

    /// The base URL of a registry address: an explicit scheme wins; loopback and configured
    /// insecure registries are plain HTTP (as Docker allows); everything else is HTTPS.
    /// Docker Hub's names map to its API host.
    pub fn registry_url(&self, addr: &RegistryAddress) -> Result<Url, OciError> {
        let authority = if addr.is_docker_hub() && addr.port.is_none() {
            "registry-1.docker.io".to_owned()
        } else {
            addr.authority()
        };
        let https = addr.https.unwrap_or_else(|| {
            !(is_loopback_host(&addr.host)
                || self.insecure_registries.iter().any(|i| {
                    i.eq_ignore_ascii_case(&authority) || i.eq_ignore_ascii_case(&addr.host)
                }))
        });
        let scheme = if https { "https" } else { "http" };
        Url::parse(&format!("{scheme}://{authority}/")).map_err(|e| OciError::Invalid {
            registry: authority.clone(),
            detail: format!("invalid registry address: {e}"),
        })
    }
}

fn build_error(e: reqwest::Error) -> OciError {
    OciError::Network {
        registry: "-".into(),
        detail: describe_reqwest(e),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = ClientConfig {
            insecure_registries: vec!["reg.local:5000".into()],
            ..ClientConfig::default()
        };
        let u = |s: &str| {
            c.registry_url(&RegistryAddress::parse(s).expect("addr"))
                .expect("url")
                .to_string()
        };
        assert_eq!(u("127.0.0.1:5000"), "http://127.0.0.1:5000/");
        assert_eq!(u("localhost:5000"), "http://localhost:5000/");
        assert_eq!(u("[::1]:5000"), "http://[::1]:5000/");
        assert_eq!(u("reg.local:5000"), "http://reg.local:5000/");
        assert_eq!(u("mcr.microsoft.com"), "https://mcr.microsoft.com/");
        assert_eq!(u("docker.io"), "https://registry-1.docker.io/");
        assert_eq!(u("https://127.0.0.1:5000"), "https://127.0.0.1:5000/");
    }
}
