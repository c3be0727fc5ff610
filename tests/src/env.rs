//! The usual set for a service test: a fresh database, the service on it with its built-in
//! registry (the production default), and an ARM client with a subscription and resource
//! group. Tests about an external backend (token auth, a fault proxy in front of it, several
//! processes sharing it) start one with [`TestEnv::start_with_backend`].
//!
//! Field order is drop order: the service dies first, then the backend, then the database.

use std::time::Duration;

use serde_json::Value;

use crate::arm::{ArmClient, ArmResponse};
use crate::oci::OciClient;
use crate::postgres::TestDatabase;
use crate::registry::TestRegistry;
use crate::service::{ServiceConfig, TestService};

/// Deadline for one import in the tests (small images finish in well under a second).
pub const IMPORT_TIMEOUT: Duration = Duration::from_secs(60);

pub struct TestEnv {
    pub service: TestService,
    pub arm: ArmClient,
    /// The external backend, when the test asked for one; `None`: the built-in registry.
    pub backend: Option<TestRegistry>,
    pub db: TestDatabase,
    pub sub: String,
    pub rg: String,
}

impl TestEnv {
    pub async fn start() -> Self {
        Self::start_with(|c| c).await
    }

    /// Like [`start`](Self::start), letting the caller adjust the service's config.
    pub async fn start_with(configure: impl FnOnce(ServiceConfig) -> ServiceConfig) -> Self {
        let db = TestDatabase::create().await;
        let config = ServiceConfig::new(db.url(), "").builtin_registry(false);
        Self::serve_on(db, None, configure(config)).await
    }

    /// Like [`start_with`](Self::start_with) on a backend of the caller's (e.g. one with
    /// token auth, or one a [`FaultProxy`](crate::fault_proxy::FaultProxy) sits in front of:
    /// `configure` may point `backend_registry` at the proxy). The backend's credentials, if
    /// any, are passed to the service as `ACR_IMPORT_BACKEND_USERNAME` / `_PASSWORD`.
    pub async fn start_with_backend(
        backend: TestRegistry,
        configure: impl FnOnce(ServiceConfig) -> ServiceConfig,
    ) -> Self {
        Self::serve(TestDatabase::create().await, backend, configure).await
    }

    /// Starts the service on `db` and `backend` (with the backend's credentials, if any).
    async fn serve(
        db: TestDatabase,
        backend: TestRegistry,
        configure: impl FnOnce(ServiceConfig) -> ServiceConfig,
    ) -> Self {
        let mut config = ServiceConfig::new(db.url(), &backend.url());
        if let Some(c) = backend.credentials() {
            config = config.backend_credentials(&c.username, &c.password);
        }
        let config = configure(config);
        Self::serve_on(db, Some(backend), config).await
    }

    async fn serve_on(
        db: TestDatabase,
        backend: Option<TestRegistry>,
        config: ServiceConfig,
    ) -> Self {
        let service = TestService::start(config).await;
        let arm = ArmClient::new(&service.base_url());
        Self {
            service,
            arm,
            backend,
            db,
            sub: uuid::Uuid::new_v4().to_string(),
            rg: "acr-tests-rg".to_string(),
        }
    }

    /// Creates emulated registry `name` in this env's subscription and resource group.
    pub async fn create_registry(&self, name: &str) -> Value {
        self.arm.create_registry(&self.sub, &self.rg, name).await
    }

    /// ARM id of emulated registry `name`.
    pub fn registry_id(&self, name: &str) -> String {
        crate::arm::registry_id(&self.sub, &self.rg, name)
    }

    /// A client on where the emulated registries' content lives: the external backend, or
    /// the built-in registry through the login servers' plain listener (root view).
    pub fn backend_client(&self) -> OciClient {
        match &self.backend {
            Some(b) => b.client(),
            None => OciClient::new(&self.service.registry_url(), None),
        }
    }

    /// The external backend of an env started with [`start_with_backend`](Self::start_with_backend).
    pub fn external_backend(&self) -> &TestRegistry {
        self.backend
            .as_ref()
            .expect("this env runs on the built-in registry: use TestEnv::start_with_backend")
    }

    /// Where repository `repo` of emulated registry `registry` lives in the backend.
    pub fn backend_repo(registry: &str, repo: &str) -> String {
        format!("{}/{repo}", registry.to_ascii_lowercase())
    }

    /// POSTs an import and asserts the 202.
    pub async fn start_import(&self, registry: &str, body: &Value) -> ArmResponse {
        let r = self.arm.import(&self.sub, &self.rg, registry, body).await;
        assert_eq!(r.status.as_u16(), 202, "import not accepted: {r}");
        r
    }

    /// POSTs an import, asserts the 202, and polls `Azure-AsyncOperation` to the end;
    /// returns (the 202, the final status JSON).
    pub async fn import_and_wait(&self, registry: &str, body: &Value) -> (ArmResponse, Value) {
        self.import_and_wait_for(registry, body, IMPORT_TIMEOUT)
            .await
    }

    /// Like [`import_and_wait`](Self::import_and_wait) with a deadline of the caller's.
    pub async fn import_and_wait_for(
        &self,
        registry: &str,
        body: &Value,
        timeout: Duration,
    ) -> (ArmResponse, Value) {
        let accepted = self.start_import(registry, body).await;
        let status = self
            .arm
            .poll_until_done(&accepted.async_operation(), timeout)
            .await;
        (accepted, status)
    }

    /// Like [`import_and_wait`](Self::import_and_wait) but asserts `Succeeded`.
    pub async fn import_ok(&self, registry: &str, body: &Value) -> Value {
        let (_, status) = self.import_and_wait(registry, body).await;
        assert_eq!(status["status"], "Succeeded", "import failed: {status}");
        status
    }
}
