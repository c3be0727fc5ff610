//! Source registry clients kept across imports, so a pipeline's imports from one registry
//! share its auth state: the challenge learnt once and each scope's bearer token until shortly
//! before it expires, instead of a 401 and a token request per import. Connections are pooled
//! by the shared HTTP client already.
//!
//! A client is keyed by the registry's base URL and a SHA-256 of the credentials (never the
//! credentials themselves), so imports with other credentials never see its tokens. Entries
//! unused for [`IDLE`] are dropped (and the credentials they hold with them); at most
//! [`MAX_ENTRIES`] are kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acr_core::metrics::Side;
use acr_oci::{ClientConfig, Credentials, HostLimits, RegistryClient};
use secrecy::ExposeSecret;
use sha2::{Digest as _, Sha256};
use url::Url;

/// How long an unused client is kept.
const IDLE: Duration = Duration::from_secs(300);
/// Most clients kept; the least recently used goes first.
const MAX_ENTRIES: usize = 256;

/// A registry's base URL and the SHA-256 fingerprint of the credentials.
type Key = (String, [u8; 32]);

#[derive(Default)]
pub(crate) struct SourceClients {
    entries: Mutex<HashMap<Key, (Arc<RegistryClient>, Instant)>>,
}

fn fingerprint(credentials: &Credentials) -> [u8; 32] {
    let mut h = Sha256::new();
    match credentials {
        Credentials::Anonymous => h.update(b"anonymous"),
        Credentials::Basic { username, password } => {
            h.update(b"basic\0");
            h.update(username.as_bytes());
            h.update(b"\0");
            h.update(password.expose_secret().as_bytes());
        }
        Credentials::Token(t) => {
            h.update(b"token\0");
            h.update(t.expose_secret().as_bytes());
        }
    }
    h.finalize().into()
}

impl SourceClients {
    /// The client for `base` with `credentials`: the cached one, or a new one.
    pub(crate) fn get(
        &self,
        http: &reqwest::Client,
        base: Url,
        credentials: Credentials,
        config: &ClientConfig,
        limits: &HostLimits,
    ) -> Arc<RegistryClient> {
        let key = (base.as_str().to_owned(), fingerprint(&credentials));
        let now = Instant::now();
        let mut entries = match self.entries.lock() {
            Ok(e) => e,
            Err(p) => p.into_inner(),
        };
        entries.retain(|_, (_, used)| now.duration_since(*used) < IDLE);
        if let Some((client, used)) = entries.get_mut(&key) {
            *used = now;
            return client.clone();
        }
        if entries.len() >= MAX_ENTRIES {
            let oldest = entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                entries.remove(&k);
            }
        }
        let client = Arc::new(
            RegistryClient::new(http.clone(), base, credentials, config, limits)
                .with_role(Side::Source),
        );
        entries.insert(key, (client.clone(), now));
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn basic(u: &str, p: &str) -> Credentials {
        Credentials::Basic {
            username: u.into(),
            password: SecretString::from(p.to_owned()),
        }
    }

    #[test]
    fn one_client_per_registry_and_credentials() {
        let config = ClientConfig::default();
        let http = config.build_http().expect("client");
        let limits = HostLimits::new(4);
        let cache = SourceClients::default();
        let url = |s: &str| Url::parse(s).expect("url");
        let a = cache.get(
            &http,
            url("http://127.0.0.1:5000/"),
            basic("u", "p"),
            &config,
            &limits,
        );
        let b = cache.get(
            &http,
            url("http://127.0.0.1:5000/"),
            basic("u", "p"),
            &config,
            &limits,
        );
        assert!(
            Arc::ptr_eq(&a, &b),
            "same registry and credentials share a client"
        );
        for other in [
            cache.get(
                &http,
                url("http://127.0.0.1:5000/"),
                basic("u", "q"),
                &config,
                &limits,
            ),
            cache.get(
                &http,
                url("http://127.0.0.1:5000/"),
                basic("v", "p"),
                &config,
                &limits,
            ),
            cache.get(
                &http,
                url("http://127.0.0.1:5001/"),
                basic("u", "p"),
                &config,
                &limits,
            ),
            cache.get(
                &http,
                url("http://127.0.0.1:5000/"),
                Credentials::Anonymous,
                &config,
                &limits,
            ),
        ] {
            assert!(
                !Arc::ptr_eq(&a, &other),
                "other credentials or registry: other client"
            );
        }
        // Username and password boundaries cannot collide.
        assert_ne!(
            fingerprint(&basic("ab", "c")),
            fingerprint(&basic("a", "bc"))
        );
    }
}
