//! Test harness: a registry on 127.0.0.1:0 over a temp dir, driven with reqwest.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use acr_registry::{Action, Authenticator, Durability, Registry, RegistryConfig, RegistryError};
use futures::future::BoxFuture;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256, Sha512};

pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_EMPTY: &str = "application/vnd.oci.empty.v1+json";

pub struct Server {
    pub base: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// Parent of the registry's `data/` directory.
    pub root: PathBuf,
    /// The registry served, for its in-process calls (`put_blob`, `collect_garbage`, …).
    pub registry: Registry,
    _dir: Option<tempfile::TempDir>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How [`try_serve`] opens a registry; the default is what [`serve`] and [`serve_at`] use.
pub struct Options {
    pub auth: Option<Arc<dyn Authenticator>>,
    pub durability: Durability,
    pub upload_idle_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            auth: None,
            durability: Durability::None,
            upload_idle_timeout: acr_registry::UPLOAD_IDLE_TIMEOUT,
        }
    }
}

pub async fn serve(auth: Option<Arc<dyn Authenticator>>) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = serve_at(dir.path(), auth).await;
    s._dir = Some(dir);
    s
}

/// A registry over `root/data` (kept when the server is dropped). Reopening the data
/// directory of a server just dropped waits for its lock: the old registry goes once its
/// serving task and open connections have ended, which the runtime does asynchronously.
pub async fn serve_at(root: &Path, auth: Option<Arc<dyn Authenticator>>) -> Server {
    let options = Options {
        auth,
        ..Options::default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match try_serve(root, &options).await {
            Ok(s) => return s,
            Err(RegistryError::Locked { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("open registry: {e:?}"),
        }
    }
}

/// A registry over `root/data` served on 127.0.0.1:0, or why it cannot be opened (a data
/// directory in use is refused at once).
pub async fn try_serve(root: &Path, options: &Options) -> Result<Server, RegistryError> {
    let registry = Registry::open(RegistryConfig {
        data_dir: root.join("data"),
        login_server_suffix: Some("azurecr.io".into()),
        auth: options.auth.clone(),
        token_lifetime: Duration::from_secs(300),
        durability: options.durability,
        upload_idle_timeout: options.upload_idle_timeout,
    })
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = registry.router();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(Server {
        base: format!("http://{addr}"),
        addr,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        root: root.to_owned(),
        registry,
        _dir: None,
        task,
    })
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.req(Method::GET, path).send().await.expect("GET")
    }

    pub async fn head(&self, path: &str) -> Response {
        self.req(Method::HEAD, path).send().await.expect("HEAD")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.req(Method::DELETE, path).send().await.expect("DELETE")
    }

    /// A `POST` without a body (upload sessions, mounts).
    pub async fn post(&self, path: &str) -> Response {
        self.req(Method::POST, path).send().await.expect("POST")
    }

    /// POST an upload session; returns its Location.
    pub async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        location(&r)
    }

    /// Monolithic POST + PUT; returns the digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let d = sha256(bytes);
        self.push_blob_as(repo, bytes, &d).await;
        d
    }

    pub async fn push_blob_as(&self, repo: &str, bytes: &[u8], digest: &str) {
        let loc = self.start_upload(repo).await;
        let r = self
            .req(Method::PUT, &with_query(&loc, &format!("digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT");
        assert_eq!(r.status(), StatusCode::CREATED, "{}", text(r).await);
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("PUT manifest")
    }

    /// Pushes a config and `layers` random layers, then the manifest by `reference`.
    pub async fn push_image(&self, repo: &str, reference: &str, seed: u8) -> Image {
        let config =
            format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes();
        let layer = vec![seed; 1000 + seed as usize];
        let config_digest = self.push_blob(repo, &config).await;
        let layer_digest = self.push_blob(repo, &layer).await;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": MT_LAYER, "digest": layer_digest, "size": layer.len()}],
        }))
        .expect("json");
        let r = self
            .put_manifest(repo, reference, MT_MANIFEST, &manifest)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{}", text(r).await);
        Image {
            digest: sha256(&manifest),
            manifest,
            config_digest,
            layer_digest,
            layer,
        }
    }
}

pub struct Image {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config_digest: String,
    pub layer_digest: String,
    pub layer: Vec<u8>,
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

pub fn sha512(b: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(b)))
}

pub fn location(r: &Response) -> String {
    header(r, "location").unwrap_or_else(|| panic!("no Location in {:?}", r.headers()))
}

pub fn header(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub fn with_query(url: &str, q: &str) -> String {
    if url.contains('?') {
        format!("{url}&{q}")
    } else {
        format!("{url}?{q}")
    }
}

pub async fn text(r: Response) -> String {
    r.text().await.unwrap_or_default()
}

pub async fn json_body(r: Response) -> Value {
    r.json().await.expect("JSON body")
}

/// The first error code of a distribution error body.
pub async fn error_code(r: Response) -> String {
    let v = json_body(r).await;
    v["errors"][0]["code"].as_str().unwrap_or("").to_owned()
}

/// Random-looking but deterministic bytes.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Test users: `alice:secret` may do anything under `team/` and `myreg/` and list the catalog;
/// `bob:hunter2` may only pull under `team/`. Records the repositories it was asked about.
#[derive(Default)]
pub struct Users {
    pub asked: std::sync::Mutex<Vec<Option<String>>>,
}

impl Authenticator for Users {
    fn authorize<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
        repository: Option<&'a str>,
        actions: &'a [Action],
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if let Ok(mut a) = self.asked.lock() {
                a.push(repository.map(str::to_owned));
            }
            let valid = matches!(
                (username, password),
                ("alice", "secret") | ("bob", "hunter2")
            );
            if !valid {
                return false;
            }
            match repository {
                None => actions.is_empty() || username == "alice",
                Some(r) => {
                    let in_team = r.starts_with("team/") || r.starts_with("myreg/");
                    match username {
                        "alice" => in_team,
                        _ => in_team && actions.iter().all(|a| *a == Action::Pull),
                    }
                }
            }
        })
    }
}
