//! Who may use the built-in registry under `--registry-auth` (the [`acr_registry::Authenticator`]).
//!
//! Two kinds of credentials are accepted:
//! - **the admin user of an emulated registry** (ACR's `adminUserEnabled`): user name = the
//!   registry's name, password = one of the two `listCredentials` passwords. It may pull, push
//!   and delete in that registry's repositories (`<name>/…`) and nowhere else; turning
//!   `adminUserEnabled` off takes effect at the next token request.
//! - **the service's own workers** (user [`INTERNAL_USER`] with a password drawn per process),
//!   which write imports into every registry and read emulated sources.

use std::sync::Arc;

use acr_core::admin::{constant_time_eq, AdminKey};
use acr_registry::{Action, Authenticator};
use acr_store::Store;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};

/// The user name the workers present to the built-in registry.
pub const INTERNAL_USER: &str = "acr-import-worker";

/// Decides Basic credentials for the built-in registry.
pub struct AdminUserAuthenticator {
    store: Store,
    key: AdminKey,
    internal_password: SecretString,
}

impl AdminUserAuthenticator {
    pub fn new(store: Store, key: AdminKey, internal_password: SecretString) -> Arc<Self> {
        Arc::new(Self {
            store,
            key,
            internal_password,
        })
    }

    async fn admin_may(&self, username: &str, password: &str, repository: Option<&str>) -> bool {
        // The admin user of registry R reaches R's repositories only: `r/…`.
        if let Some(repo) = repository {
            let Some((prefix, rest)) = repo.split_once('/') else {
                return false;
            };
            if rest.is_empty() || !prefix.eq_ignore_ascii_case(username) {
                return false;
            }
        }
        let registry = match self.store.get_registry_by_name(username).await {
            Ok(Some(r)) => r,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "registry auth: cannot read the registry");
                return false;
            }
        };
        !registry.deleting()
            && registry.properties.0.admin_user_enabled
            && self
                .key
                .verify(&registry.name, &registry.generation(), username, password)
    }
}

impl Authenticator for AdminUserAuthenticator {
    fn authorize<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
        repository: Option<&'a str>,
        _actions: &'a [Action],
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if username == INTERNAL_USER {
                let expected = self.internal_password.expose_secret().as_bytes();
                return constant_time_eq(expected, password.as_bytes());
            }
            self.admin_may(username, password, repository).await
        })
    }

    /// An admin user's token dies with its registry (deleted, being deleted) and with the
    /// admin user (turned off); the workers' tokens always count.
    fn still_valid<'a>(&'a self, username: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if username == INTERNAL_USER {
                return true;
            }
            match self.store.get_registry_by_name(username).await {
                Ok(Some(r)) => !r.deleting() && r.properties.0.admin_user_enabled,
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "registry auth: cannot read the registry");
                    false
                }
            }
        })
    }
}
