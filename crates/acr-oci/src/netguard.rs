//! SSRF defences of the HTTP client for source registries.
//!
//! The classifier is [`acr_core::netpolicy`]. Here it is applied: IP literals are checked
//! before a request ([`check_url`], used for the source address and the token realm) and on
//! every redirect hop (the client's redirect policy); host names are checked when they resolve
//! ([`GuardedResolver`] drops refused addresses and fails when none is left). The backend
//! registry is configured by the operator and is not guarded.

use std::net::{IpAddr, SocketAddr};

pub use acr_core::netpolicy::{AddressRefused, NetworkPolicy};

/// Refuses a URL whose host is an IP literal the policy refuses (names: see the resolver).
pub fn check_url(policy: &NetworkPolicy, url: &url::Url) -> Result<(), AddressRefused> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => policy.check_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => policy.check_ip(IpAddr::V6(ip)),
        _ => Ok(()),
    }
}

/// A resolver that drops the addresses the policy refuses and fails when none is left.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub policy: NetworkPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut first_refusal = None;
            let allowed: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| match policy.refusal(a.ip()) {
                    Some(reason) => {
                        first_refusal.get_or_insert(AddressRefused {
                            what: format!("host {host} resolves to"),
                            addr: a.ip(),
                            reason,
                        });
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> = match first_refusal {
                    Some(r) => Box::new(r),
                    None => format!("host {host} has no address").into(),
                };
                return Err(err);
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The refusal somewhere in an error's source chain, if any.
pub fn find_refusal(e: &(dyn std::error::Error + 'static)) -> Option<AddressRefused> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<AddressRefused>() {
            return Some(r.clone());
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let p = NetworkPolicy::default();
        let u = url::Url::parse("http://[fd00:ec2::254]/latest").expect("url");
        assert!(check_url(&p, &u).is_err());
        let u = url::Url::parse("http://169.254.169.254/token").expect("url");
        assert!(check_url(&p, &u).is_err());
        let u = url::Url::parse("http://127.0.0.1:5000/v2/").expect("url");
        assert!(check_url(&p, &u).is_ok());
        assert!(check_url(&NetworkPolicy { deny_private: true }, &u).is_err());
    }

    #[tokio::test]
    async fn resolver_filters_names() {
        use reqwest::dns::Resolve as _;
        let r = GuardedResolver {
            policy: NetworkPolicy { deny_private: true },
        };
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        let err = match r.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        assert!(find_refusal(err.as_ref()).is_some(), "{err}");
        let open = GuardedResolver {
            policy: NetworkPolicy::default(),
        };
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        assert!(open.resolve(name).await.is_ok());
    }
}
