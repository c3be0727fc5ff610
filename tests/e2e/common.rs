//! Helpers shared by the feature modules.

use std::time::Duration;

use acr_import_tests::env::IMPORT_TIMEOUT;
use acr_import_tests::fault_proxy::{Kind, LogEntry};
use acr_import_tests::{
    ArmResponse, Credentials, FaultProxy, OciClient, ServiceConfig, TestEnv, TestImage,
    TestRegistry,
};
use serde_json::{json, Value};
use tokio::sync::watch;

/// The emulated registry most tests import into; it lives in the backend as `myreg/…`.
pub const REG: &str = "MyReg";

/// Backend repository of `repo` in [`REG`].
pub fn target(repo: &str) -> String {
    format!("{}/{repo}", REG.to_ascii_lowercase())
}

/// An import body with a `registryUri` source.
pub fn uri_import(host: &str, source_image: &str, target_tags: &[&str]) -> Value {
    json!({
        "source": {"registryUri": host, "sourceImage": source_image},
        "targetTags": target_tags,
    })
}

/// An anonymous source registry holding `image` as `repo:tag`.
pub async fn anonymous_source(repo: &str, tag: &str, image: &TestImage) -> TestRegistry {
    let src = TestRegistry::anonymous().await;
    src.client()
        .push_image(repo, tag, image)
        .await
        .expect("push source image");
    src
}

/// Asserts a final operation status is `Failed` with `code`; returns the message.
pub fn assert_failed(status: &Value, code: &str) -> String {
    assert_eq!(status["status"], "Failed", "expected Failed: {status}");
    assert_eq!(status["error"]["code"], code, "error code: {status}");
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "error.message empty: {status}");
    message.to_string()
}

/// Asserts a final operation status is `Succeeded` with the usual fields.
pub fn assert_succeeded(status: &Value) {
    assert_eq!(
        status["status"], "Succeeded",
        "expected Succeeded: {status}"
    );
    assert!(status["id"].is_string(), "no id: {status}");
    assert!(
        status["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("registries-")),
        "name: {status}"
    );
    assert!(status["startTime"].is_string(), "no startTime: {status}");
    assert!(status["endTime"].is_string(), "no endTime: {status}");
    assert!(
        status.get("error").is_none_or(Value::is_null),
        "error on success: {status}"
    );
    if let Some(p) = status.get("properties").filter(|p| p.is_object()) {
        assert_eq!(
            p["manifestsDone"], p["manifestsTotal"],
            "manifests: {status}"
        );
        assert_eq!(p["blobsDone"], p["blobsTotal"], "blobs: {status}");
    }
}

/// An anonymous source registry holding `image` as `repo:tag`, and a fault proxy in front of
/// it (import from `proxy.host()`).
pub async fn proxied_source(
    repo: &str,
    tag: &str,
    image: &TestImage,
) -> (TestRegistry, FaultProxy) {
    let src = anonymous_source(repo, tag, image).await;
    let proxy = FaultProxy::start(&src.url()).await;
    (src, proxy)
}

/// A service whose `--backend-registry` is a fault proxy in front of an anonymous backend
/// (with registry `registry`), and an anonymous source holding `image` as `repo:v1`.
pub async fn env_behind_backend_proxy(
    registry: &str,
    repo: &str,
    image: &TestImage,
) -> (TestEnv, FaultProxy, TestRegistry) {
    env_behind_backend_proxy_with(registry, repo, image, |c| c).await
}

/// Like [`env_behind_backend_proxy`], with the service's config adjusted by `configure`.
pub async fn env_behind_backend_proxy_with(
    registry: &str,
    repo: &str,
    image: &TestImage,
    configure: impl FnOnce(ServiceConfig) -> ServiceConfig,
) -> (TestEnv, FaultProxy, TestRegistry) {
    let start = async {
        let backend = TestRegistry::anonymous().await;
        let proxy = FaultProxy::start(&backend.url()).await;
        let proxy_url = proxy.url();
        let env = TestEnv::start_with_backend(backend, |mut c| {
            c.backend_registry = Some(proxy_url);
            configure(c)
        })
        .await;
        env.create_registry(registry).await;
        (env, proxy)
    };
    let ((env, proxy), src) = tokio::join!(start, anonymous_source(repo, "v1", image));
    (env, proxy, src)
}

/// A source with Basic auth (`creds`) holding `image` as `repo:tag`, and a fault proxy in front
/// of it that knows the credentials (its redirect target fetches with them).
pub async fn proxied_private_source(
    creds: &Credentials,
    repo: &str,
    tag: &str,
    image: &TestImage,
) -> (TestRegistry, FaultProxy) {
    let src = TestRegistry::htpasswd(&creds.username, &creds.password).await;
    src.client()
        .push_image(repo, tag, image)
        .await
        .expect("push source image");
    let proxy = FaultProxy::start_with_credentials(&src.url(), Some(creds.clone())).await;
    (src, proxy)
}

/// The usual fault scenario: the service with registry [`REG`], and an anonymous source
/// holding `image` as `demo/<name>:v1` behind a fault proxy (`proxy`, where rules go). The
/// import copies it to `imported/<name>:v1` (in the backend: [`Self::target`]).
pub struct ProxiedImport {
    pub env: TestEnv,
    pub proxy: FaultProxy,
    pub src: TestRegistry,
    pub image: TestImage,
    name: String,
}

impl ProxiedImport {
    pub async fn start(name: &str, image: TestImage) -> Self {
        Self::start_with(name, image, |c| c).await
    }

    /// Like [`Self::start`], with the service's config adjusted by `configure`.
    pub async fn start_with(
        name: &str,
        image: TestImage,
        configure: impl FnOnce(ServiceConfig) -> ServiceConfig,
    ) -> Self {
        let repo = format!("demo/{name}");
        let (env, (src, proxy)) = tokio::join!(
            TestEnv::start_with(configure),
            proxied_source(&repo, "v1", &image)
        );
        env.create_registry(REG).await;
        Self {
            env,
            proxy,
            src,
            image,
            name: name.to_owned(),
        }
    }

    /// The import body of this scenario.
    pub fn body(&self) -> Value {
        self.body_for(&self.name)
    }

    /// The import body for `demo/<name>:v1` of the source (through the proxy) to
    /// `imported/<name>:v1`.
    pub fn body_for(&self, name: &str) -> Value {
        uri_import(
            &self.proxy.host(),
            &format!("demo/{name}:v1"),
            &[&format!("imported/{name}:v1")],
        )
    }

    /// Backend repository the image is imported to.
    pub fn target(&self) -> String {
        target(&format!("imported/{}", self.name))
    }

    /// Runs the import to its end (at most [`IMPORT_TIMEOUT`]); the final status.
    pub async fn import(&self) -> Value {
        self.import_for(IMPORT_TIMEOUT).await
    }

    /// Runs the import to its end, waiting at most `timeout`; the final status.
    pub async fn import_for(&self, timeout: Duration) -> Value {
        self.env
            .import_and_wait_for(REG, &self.body(), timeout)
            .await
            .1
    }

    /// Runs the import, asserts it succeeded and that the target holds the image, tagged.
    pub async fn import_ok(&self) -> Value {
        let status = self.env.import_ok(REG, &self.body()).await;
        assert_succeeded(&status);
        self.env
            .backend_client()
            .assert_has_image(&self.target(), Some("v1"), &self.image)
            .await;
        status
    }

    /// The source GETs of blob `digest`, as the proxy logged them.
    pub fn blob_gets(&self, digest: &str) -> Vec<LogEntry> {
        self.proxy
            .log_of(Kind::BlobGet)
            .into_iter()
            .filter(|e| e.path.contains(digest))
            .collect()
    }

    /// Asserts the target repository has no tag.
    pub async fn assert_untagged(&self) {
        let repo = self.target();
        let tags = self
            .env
            .backend_client()
            .tags_list(&repo)
            .await
            .expect("tags/list");
        assert!(tags.is_empty(), "{repo} has tags {tags:?}");
    }
}

/// `properties` of an operation status, as an object (panics if absent).
pub fn progress(status: &Value) -> &Value {
    let p = &status["properties"];
    assert!(p.is_object(), "no properties in the status: {status}");
    p
}

/// `properties.<field>` as a number (panics if absent).
pub fn prop(status: &Value, field: &str) -> u64 {
    progress(status)[field]
        .as_u64()
        .unwrap_or_else(|| panic!("properties.{field} missing or not a number: {status}"))
}

/// Asserts every blob of `image` at `repo` streams back with exactly its digest and size.
pub async fn assert_blob_bytes(client: &OciClient, repo: &str, image: &TestImage) {
    for blob in &image.blobs {
        let (digest, len) = client
            .blob_digest(repo, &blob.digest)
            .await
            .unwrap_or_else(|e| panic!("GET {repo}@{}: {e:#}", blob.digest));
        assert_eq!(
            (digest.as_str(), len),
            (blob.digest.as_str(), blob.size),
            "bytes of {repo}@{}",
            blob.digest
        );
    }
}

/// Asserts the backend holds `image` at `repo` with `tag`, every blob with exactly its bytes.
pub async fn assert_imported(env: &TestEnv, repo: &str, tag: &str, image: &TestImage) {
    let backend = env.backend_client();
    backend.assert_has_image(repo, Some(tag), image).await;
    assert_blob_bytes(&backend, repo, image).await;
}

/// Asserts the Location URL of a finished operation answers `status` (with an ARM error
/// `code` when given).
pub async fn assert_location(
    env: &TestEnv,
    accepted: &ArmResponse,
    status: u16,
    code: Option<&str>,
) {
    let loc = env.arm.get(&accepted.location()).await;
    assert_eq!(loc.status.as_u16(), status, "Location URL: {loc}");
    if let Some(code) = code {
        assert_eq!(loc.assert_arm_error(), code, "Location URL: {loc}");
    }
}

/// Asserts `repo` at the target has no tags and none of `image`.
pub async fn assert_nothing_copied(env: &TestEnv, repo: &str, image: &TestImage) {
    let backend = env.backend_client();
    let tags = backend.tags_list(repo).await.expect("tags/list");
    assert!(tags.is_empty(), "{repo} has tags {tags:?}");
    backend.assert_has_none_of(repo, image).await;
}

/// Runs `cmd` to completion off the async runtime; returns (success, stdout+stderr).
pub async fn run(mut cmd: std::process::Command) -> (bool, String) {
    let what = format!("{cmd:?}");
    tokio::task::spawn_blocking(move || {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("could not run {what}: {e}"));
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    })
    .await
    .expect("join")
}

/// A source whose requests hang until `release` is sent, then answer 404 MANIFEST_UNKNOWN
/// (the imports then fail `SourceImageNotFound`): holds operations unfinished for the limit
/// and queue tests.
pub async fn held_source() -> (String, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    use axum::extract::State;
    use axum::response::{IntoResponse, Response};
    let (tx, rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    async fn hold(State(mut rx): State<watch::Receiver<bool>>) -> Response {
        let _ = rx.wait_for(|released| *released).await;
        (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(
                json!({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}),
            ),
        )
            .into_response()
    }
    let app = axum::Router::new().fallback(hold).with_state(rx);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (host, tx, task)
}

/// `GET /metrics` of the env's service, parsed (see `acr_import_tests::prometheus`).
pub async fn scrape(env: &TestEnv) -> acr_import_tests::prometheus::Scrape {
    acr_import_tests::prometheus::Scrape::get(&format!("{}/metrics", env.service.base_url())).await
}
