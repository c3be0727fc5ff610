//! The login servers, as clients reach them: `https://myregistry.azurecr.io` through the
//! service's CONNECT proxy with its CA trusted (no DNS, no root). ACR's challenge and token
//! dance (exchange, refresh, password, docker's Basic flow), admin users, anonymous pull,
//! tokens bound to their login server; the `/acr/v1` data plane in the spec's shapes with
//! `changeableAttributes` enforced on pushes, deletes and imports; the proxy's refusals;
//! emulated sources' credentials; resource groups; skopeo through the proxy.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use acr_import_tests::arm::registry_id;
use acr_import_tests::image::{Format, Platform};
use acr_import_tests::util::free_port;
use acr_import_tests::{
    ArmClient, ArmResponse, OciClient, ServiceConfig, TestImage, TestRegistry, TestService,
    API_VERSION,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{anonymous_source, uri_import};

pub(crate) const RG: &str = "login-rg";
pub(crate) const LS: &str = "myregistry.azurecr.io";
pub(crate) const ZERO_USER: &str = "00000000-0000-0000-0000-000000000000";

/// A service with TLS login servers and the proxy (on SQLite with the built-in registry by
/// default).
pub(crate) struct World {
    pub(crate) svc: TestService,
    pub(crate) arm: ArmClient,
    pub(crate) sub: String,
    pub(crate) ca: PathBuf,
    pub(crate) proxy: u16,
    _dir: Option<tempfile::TempDir>,
}

impl World {
    /// The zero-setup default (SQLite, the built-in registry) with TLS login servers.
    pub(crate) async fn start_default() -> World {
        World::start(|c| c).await
    }

    async fn start(configure: impl FnOnce(ServiceConfig) -> ServiceConfig) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let config =
            ServiceConfig::sqlite(&dir.path().join("data"), "unused").builtin_registry(false);
        let tls = dir.path().join("tls");
        let mut w = World::start_on(configure(config), &tls).await;
        w._dir = Some(dir);
        w
    }

    /// `config` with TLS login servers whose CA lives in `tls_dir` (replicas share it) and
    /// a proxy.
    pub(crate) async fn start_on(config: ServiceConfig, tls_dir: &std::path::Path) -> World {
        let ca = tls_dir.join("ca.pem");
        let proxy = free_port();
        let config = config
            .flag("--listen-tls", format!("127.0.0.1:{}", free_port()))
            .arg("--tls-self-signed")
            .flag("--tls-dir", tls_dir.display())
            .flag("--proxy-listen", format!("127.0.0.1:{proxy}"));
        let svc = TestService::start(config).await;
        let arm = ArmClient::new(&svc.base_url());
        World {
            svc,
            arm,
            sub: uuid::Uuid::new_v4().to_string(),
            ca,
            proxy,
            _dir: None,
        }
    }

    /// A client that reaches `https://*.azurecr.io` through the proxy, trusting the CA.
    pub(crate) fn https(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.ca).expect("CA");
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA pem"))
            .proxy(
                reqwest::Proxy::https(format!("http://127.0.0.1:{}", self.proxy)).expect("proxy"),
            )
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    }

    pub(crate) async fn registry(&self, name: &str, properties: Value) {
        let r = self
            .arm
            .send_json(
                Method::PUT,
                &self.arm.registry_url(&self.sub, RG, name),
                &json!({"location": "eastus", "sku": {"name": "Premium"}, "properties": properties}),
            )
            .await;
        assert!(matches!(r.status.as_u16(), 200 | 201), "{r}");
    }

    pub(crate) async fn import(&self, registry: &str, body: &Value) -> Value {
        let r = self.arm.import(&self.sub, RG, registry, body).await;
        assert!(matches!(r.status.as_u16(), 200 | 202), "{r}");
        if r.status.as_u16() == 200 {
            return json!({"status": "Succeeded"});
        }
        self.arm
            .poll_until_done(&r.async_operation(), Duration::from_secs(60))
            .await
    }

    pub(crate) async fn mi_token(&self) -> String {
        let r = self
            .arm
            .send(
                Method::GET,
                &self.arm.url(
                    "/metadata/identity/oauth2/token?api-version=2019-08-01&resource=https://management.azure.com/",
                ),
                &[("X-IDENTITY-HEADER", "x")],
                None,
                None,
            )
            .await;
        assert_eq!(r.status.as_u16(), 200, "{r}");
        r.json()["access_token"].as_str().expect("token").to_owned()
    }

    pub(crate) async fn list_credentials(&self, name: &str) -> String {
        let r = self
            .arm
            .send_json(
                Method::POST,
                &self.arm.url(&format!(
                    "{}/listCredentials?api-version={API_VERSION}",
                    registry_id(&self.sub, RG, name)
                )),
                &json!({}),
            )
            .await;
        assert_eq!(r.status.as_u16(), 200, "{r}");
        r.json()["passwords"][0]["value"]
            .as_str()
            .expect("password")
            .to_owned()
    }
}

pub(crate) fn url(ls: &str, path: &str) -> String {
    format!("https://{ls}{path}")
}

pub(crate) async fn exchange(c: &reqwest::Client, ls: &str, aad: &str) -> reqwest::Response {
    c.post(url(ls, "/oauth2/exchange?api-version=2021-07-01"))
        .form(&[
            ("grant_type", "access_token"),
            ("service", ls),
            ("tenant", "any"),
            ("access_token", aad),
        ])
        .send()
        .await
        .expect("exchange")
}

pub(crate) async fn token(
    c: &reqwest::Client,
    ls: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    c.post(url(ls, "/oauth2/token"))
        .form(form)
        .send()
        .await
        .expect("token")
}

pub(crate) async fn json_of(r: reqwest::Response) -> Value {
    let status = r.status();
    let text = r.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"))
}

/// A refresh token for the managed identity, then an access token for `scopes`.
pub(crate) async fn access_token(
    w: &World,
    c: &reqwest::Client,
    ls: &str,
    scopes: &[&str],
) -> String {
    let aad = w.mi_token().await;
    let r = exchange(c, ls, &aad).await;
    assert_eq!(r.status(), StatusCode::OK);
    let refresh = json_of(r).await["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("service", ls),
        ("refresh_token", refresh.as_str()),
    ];
    for s in scopes {
        form.push(("scope", s));
    }
    let r = token(c, ls, &form).await;
    assert_eq!(r.status(), StatusCode::OK);
    json_of(r).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

pub(crate) async fn get(c: &reqwest::Client, u: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut rb = c
        .get(u)
        .header("Accept", acr_import_tests::image::ALL_MANIFEST_TYPES);
    if let Some(t) = bearer {
        rb = rb.bearer_auth(t);
    }
    rb.send().await.expect("GET")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_login_server_speaks_acrs_auth_dance() {
    let image = TestImage::three_platform(9301);
    let src = anonymous_source("demo/multi", "v1", &image).await;
    let w = World::start(|c| c).await;
    w.registry("myregistry", json!({})).await;
    w.registry("otherregistry", json!({})).await;
    let s = w
        .import(
            "myregistry",
            &uri_import(&src.host(), "demo/multi:v1", &["app:v1", "team/app:v1"]),
        )
        .await;
    assert_eq!(s["status"], "Succeeded", "{s}");
    let c = w.https();

    // The challenge, exactly as ACR words it (no scope on /v2/).
    let r = get(&c, &url(LS, "/v2/"), None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"https://myregistry.azurecr.io/oauth2/token\",service=\"myregistry.azurecr.io\""
    );
    let r = get(&c, &url(LS, "/v2/app/manifests/v1"), None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .ends_with(",scope=\"repository:app:pull\""),
        "{:?}",
        r.headers()
    );
    assert_eq!(json_of(r).await["errors"][0]["code"], "UNAUTHORIZED");

    // exchange → refresh token (a JWT whose payload the SDK reads with standard base64).
    let aad = w.mi_token().await;
    let r = exchange(&c, LS, &aad).await;
    assert_eq!(r.status(), StatusCode::OK);
    let refresh = json_of(r).await["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let parts: Vec<&str> = refresh.split('.').collect();
    assert_eq!(parts.len(), 3, "{refresh}");
    assert!(!parts[1].contains(['-', '_']), "{refresh}");
    // refresh → access for two scopes; the data calls work with it.
    let access = access_token(
        &w,
        &c,
        LS,
        &["repository:app:pull,metadata_read", "registry:catalog:*"],
    )
    .await;
    let r = get(&c, &url(LS, "/v2/app/manifests/v1"), Some(&access)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-content-digest"], image.digest());
    let cat = json_of(get(&c, &url(LS, "/v2/_catalog"), Some(&access)).await).await;
    assert_eq!(cat, json!({"repositories": ["app", "team/app"]}));
    // A token for one repository does not open another.
    let r = get(&c, &url(LS, "/v2/team/app/manifests/v1"), Some(&access)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // …nor another registry's login server.
    let r = get(
        &c,
        &url("otherregistry.azurecr.io", "/v2/app/manifests/v1"),
        Some(&access),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // docker's flow: GET /oauth2/token with Basic (the token user + the refresh token).
    let r = c
        .get(url(
            LS,
            "/oauth2/token?service=myregistry.azurecr.io&scope=repository:app:pull",
        ))
        .basic_auth(ZERO_USER, Some(&refresh))
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), StatusCode::OK);
    let t = json_of(r).await;
    let docker_token = t["token"].as_str().expect("token").to_owned();
    assert_eq!(t["access_token"], t["token"]);
    let layer = &image.blobs.last().expect("a blob").digest;
    let r = c
        .get(url(LS, &format!("/v2/app/blobs/{layer}")))
        .bearer_auth(&docker_token)
        .header("Range", "bytes=0-9")
        .send()
        .await
        .expect("blob");
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.expect("bytes").len(), 10);

    // Bad tokens and passwords are refused.
    let r = token(
        &c,
        LS,
        &[
            ("grant_type", "refresh_token"),
            ("service", LS),
            ("refresh_token", "not.a.token"),
            ("scope", "repository:app:pull"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = exchange(&c, LS, "garbage").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The admin user (password grant, as `az acr login -u/-p` does; Basic on /v2 too).
    w.registry("myregistry", json!({"adminUserEnabled": true}))
        .await;
    let password = w.list_credentials("myregistry").await;
    let r = token(
        &c,
        LS,
        &[
            ("grant_type", "password"),
            ("service", LS),
            ("username", "myregistry"),
            ("password", &password),
            ("scope", "repository:app:pull,push"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let admin = json_of(r).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let r = get(&c, &url(LS, "/v2/app/manifests/v1"), Some(&admin)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(url(LS, "/v2/app/manifests/v1"))
        .basic_auth("myregistry", Some(&password))
        .header("Accept", acr_import_tests::image::ALL_MANIFEST_TYPES)
        .send()
        .await
        .expect("basic");
    assert_eq!(r.status(), StatusCode::OK);
    let r = token(
        &c,
        LS,
        &[
            ("grant_type", "password"),
            ("service", LS),
            ("username", "myregistry"),
            ("password", "wrong"),
            ("scope", "repository:app:pull"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Its token dies when the admin user is turned off.
    w.registry("myregistry", json!({"adminUserEnabled": false}))
        .await;
    let r = get(&c, &url(LS, "/v2/app/manifests/v1"), Some(&admin)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Anonymous pull: pull yes, push no.
    let r = get(&c, &url(LS, "/v2/app/manifests/v1"), None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    w.registry("myregistry", json!({"anonymousPullEnabled": true}))
        .await;
    let r = c
        .get(url(
            LS,
            "/oauth2/token?service=myregistry.azurecr.io&scope=repository:app:pull,push",
        ))
        .send()
        .await
        .expect("token");
    let anon = json_of(r).await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let r = get(&c, &url(LS, "/v2/app/manifests/v1"), Some(&anon)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .post(url(LS, "/v2/app/blobs/uploads/"))
        .bearer_auth(&anon)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .contains("insufficient_scope"));
    // The plain listener keeps the anonymous zero-setup default.
    OciClient::new(&w.svc.login_url(), None)
        .assert_has_image("myregistry/app", Some("v1"), &image)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acr_v1_answers_like_acr_and_enforces_locks() {
    let image = TestImage::three_platform(9401);
    let other = TestImage::single_for(9402, Format::Oci, Platform::arm64(), &[20_000]);
    let src = anonymous_source("demo/multi", "v1", &image).await;
    src.client()
        .push_image("demo/other", "v1", &other)
        .await
        .unwrap();
    let w = World::start(|c| c).await;
    w.registry("myregistry", json!({})).await;
    let body = uri_import(&src.host(), "demo/multi:v1", &["app:v1", "team/app:v1"]);
    assert_eq!(w.import("myregistry", &body).await["status"], "Succeeded");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut later = uri_import(&src.host(), "demo/multi:v1", &["app:v2"]);
    later["mode"] = json!("Force");
    assert_eq!(w.import("myregistry", &later).await["status"], "Succeeded");
    let c = w.https();
    let t = access_token(
        &w,
        &c,
        LS,
        &[
            "registry:catalog:*",
            "repository:app:pull,push,delete,metadata_read,metadata_write",
            "repository:team/app:delete,metadata_read",
        ],
    )
    .await;
    let read = |path: &str| {
        let c = c.clone();
        let t = t.clone();
        let path = path.to_owned();
        async move {
            let r = c
                .get(url(LS, &path))
                .bearer_auth(&t)
                .send()
                .await
                .expect("GET");
            let link = r
                .headers()
                .get("link")
                .map(|l| l.to_str().expect("ascii").to_owned());
            (r.status(), link, json_of(r).await)
        }
    };
    let (s, _, v) = read("/acr/v1/_catalog").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({"repositories": ["app", "team/app"]}));

    let (s, _, repo) = read("/acr/v1/app").await;
    assert_eq!(s, StatusCode::OK, "{repo}");
    assert_eq!(repo["registry"], LS);
    assert_eq!(repo["imageName"], "app");
    assert_eq!(repo["manifestCount"], 4);
    assert_eq!(repo["tagCount"], 2);
    assert_eq!(
        repo["changeableAttributes"],
        json!({"deleteEnabled": true, "writeEnabled": true, "readEnabled": true,
               "listEnabled": true, "teleportEnabled": false})
    );
    let created = repo["createdTime"].as_str().expect("time");
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with('Z'),
        "{created}"
    );

    // Tags newest first, one per page with ACR's Link; the SDK's percent-encoded name works.
    let (s, link, page) = read("/acr/v1/app/_tags?n=1&orderby=timedesc").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["imageName"], "app");
    assert_eq!(page["tags"][0]["name"], "v2", "{page}");
    assert_eq!(page["tags"][0]["digest"], image.digest());
    assert_eq!(page["tags"][0]["signed"], false);
    assert_eq!(
        link.as_deref(),
        Some("</acr/v1/app/_tags?last=v2&n=1&orderby=timedesc>; rel=\"next\"")
    );
    let (_, link, page) = read("/acr/v1/app/_tags?last=v2&n=1&orderby=timedesc").await;
    assert_eq!(page["tags"][0]["name"], "v1", "{page}");
    assert!(link.is_none());
    let (s, _, page) = read("/acr/v1/team%2Fapp/_tags").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["tags"][0]["name"], "v1");

    // Manifests: every platform with its architecture and os; the index with its references.
    let (_, _, m) = read("/acr/v1/app/_manifests").await;
    let manifests = m["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 4, "{m}");
    let index = manifests
        .iter()
        .find(|x| x["digest"] == image.digest())
        .expect("the index");
    assert_eq!(index["mediaType"], image.media_type());
    assert_eq!(index["tags"], json!(["v1", "v2"]));
    assert_eq!(
        index["references"].as_array().map(Vec::len),
        Some(3),
        "{index}"
    );
    for child in &image.children {
        let p = child.platform.as_ref().expect("platform");
        let entry = manifests
            .iter()
            .find(|x| x["digest"] == child.digest)
            .unwrap_or_else(|| panic!("{} missing: {m}", child.digest));
        assert_eq!(entry["architecture"], p.architecture, "{entry}");
        assert_eq!(entry["os"], p.os, "{entry}");
        assert!(
            entry.get("tags").is_none(),
            "an untagged manifest has no tags: {entry}"
        );
        assert!(entry["imageSize"].as_i64().unwrap_or(0) > 0, "{entry}");
        assert!(entry["configMediaType"].is_string(), "{entry}");
    }
    let child = &image.children[1];
    let (s, _, one) = read(&format!("/acr/v1/app/_manifests/{}", child.digest)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["manifest"]["architecture"], "arm64");
    let (s, _, one) = read("/acr/v1/app/_tags/v1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["tag"]["name"], "v1");

    // A write-locked tag refuses an import that would move it, and a push.
    let patch = |path: &str, body: Value| {
        let c = c.clone();
        let t = t.clone();
        let path = path.to_owned();
        async move {
            let r = c
                .patch(url(LS, &path))
                .bearer_auth(&t)
                .json(&body)
                .send()
                .await
                .expect("PATCH");
            (r.status(), json_of(r).await)
        }
    };
    let (s, v) = patch("/acr/v1/app/_tags/v1", json!({"writeEnabled": false})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["tag"]["changeableAttributes"]["writeEnabled"], false);
    let mut force = uri_import(&src.host(), "demo/other:v1", &["app:v1"]);
    force["mode"] = json!("Force");
    let st = w.import("myregistry", &force).await;
    assert_eq!(st["status"], "Failed", "{st}");
    assert_eq!(st["error"]["code"], "Conflict", "{st}");
    assert!(
        st["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("locked"),
        "{st}"
    );
    // Re-importing the very image it holds moves nothing and is fine.
    let mut same = uri_import(&src.host(), "demo/multi:v1", &["app:v1"]);
    same["mode"] = json!("Force");
    assert_eq!(w.import("myregistry", &same).await["status"], "Succeeded");
    let r = c
        .put(url(LS, "/v2/app/manifests/v1"))
        .bearer_auth(&t)
        .header("Content-Type", other.media_type())
        .body(other.top.bytes.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json_of(r).await["errors"][0]["code"], "DENIED");
    let (s, _) = patch(
        "/acr/v1/app/_tags/v1",
        json!({"writeEnabled": true, "deleteEnabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // A delete-locked tag refuses untag; unlocked, untag removes the tag, not the manifest.
    let untag = |path: &str| {
        let c = c.clone();
        let t = t.clone();
        let path = path.to_owned();
        async move {
            c.delete(url(LS, &path))
                .bearer_auth(&t)
                .send()
                .await
                .expect("DELETE")
        }
    };
    let r = untag("/acr/v1/app/_tags/v1").await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let (s, _) = patch("/acr/v1/app/_tags/v1", json!({"deleteEnabled": true})).await;
    assert_eq!(s, StatusCode::OK);
    let r = untag("/acr/v1/app/_tags/v1").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (s, _, _) = read("/acr/v1/app/_tags/v1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, _, page) = read("/acr/v1/app/_tags").await;
    assert_eq!(page["tags"].as_array().map(Vec::len), Some(1), "{page}");
    let r = get(
        &c,
        &url(LS, &format!("/v2/app/manifests/{}", image.digest())),
        Some(&t),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "the manifest stays");

    // Repository delete: ACR's answer, then 404.
    let r = untag("/acr/v1/team/app").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let deleted = json_of(r).await;
    assert_eq!(deleted["tagsDeleted"], json!(["v1"]), "{deleted}");
    let mut got: Vec<String> = deleted["manifestsDeleted"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|d| d.as_str().unwrap_or_default().to_owned())
        .collect();
    got.sort();
    let mut want = image.manifest_digests();
    want.sort();
    assert_eq!(got, want);
    let (s, _, e) = read("/acr/v1/team/app").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["errors"][0]["code"], "NAME_UNKNOWN");
    let (_, _, v) = read("/acr/v1/_catalog").await;
    assert_eq!(v, json!({"repositories": ["app"]}));

    // A push through the login servers is recorded: listed with its platform.
    let pushed = TestImage::single_for(9403, Format::Docker, Platform::arm_v7(), &[1000]);
    OciClient::new(&w.svc.login_url(), None)
        .push_image("myregistry/pushed", "p1", &pushed)
        .await
        .unwrap();
    let t = access_token(&w, &c, LS, &["repository:pushed:metadata_read"]).await;
    let r = c
        .get(url(LS, "/acr/v1/pushed/_manifests"))
        .bearer_auth(&t)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    let m = json_of(r).await;
    assert_eq!(m["manifests"][0]["architecture"], "arm", "{m}");
    assert_eq!(m["manifests"][0]["tags"], json!(["p1"]), "{m}");
    assert_eq!(m["manifests"][0]["mediaType"], pushed.media_type());
}

/// Sends raw bytes to the proxy and returns its first answer line.
fn proxy_says(port: u16, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(request.as_bytes()).expect("write");
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_only_tunnels_to_login_servers() {
    let w = World::start(|c| c).await;
    w.registry("myregistry", json!({})).await;
    assert_eq!(
        proxy_says(
            w.proxy,
            "CONNECT myregistry.azurecr.io:443 HTTP/1.1\r\nHost: myregistry.azurecr.io:443\r\n\r\n"
        ),
        "HTTP/1.1 200 Connection Established"
    );
    for refused in [
        "CONNECT nosuchregistry.azurecr.io:443 HTTP/1.1\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\n\r\n",
        &format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", w.svc.port()),
        "CONNECT [::1]:443 HTTP/1.1\r\n\r\n",
        "GET http://myregistry.azurecr.io/v2/ HTTP/1.1\r\nHost: myregistry.azurecr.io\r\n\r\n",
    ] {
        assert_eq!(
            proxy_says(w.proxy, refused),
            "HTTP/1.1 403 Forbidden",
            "{refused:?} was not refused"
        );
    }
    assert!(
        w.svc.log().contains("proxy: refused"),
        "refusals are logged"
    );
    // The other way without DNS: `acr-import hosts` prints the /etc/hosts lines.
    let out = Command::new(acr_import_tests::service::service_bin())
        .args(["hosts", "--endpoint", &w.svc.base_url()])
        .output()
        .expect("acr-import hosts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "127.0.0.1 myregistry.azurecr.io\n"
    );
    // Through it, a client reaches the login server with its name only.
    let r = get(&w.https(), &url(LS, "/v2/"), None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emulated_source_by_login_server_checks_the_given_credentials() {
    let image = TestImage::single(9501, Format::Oci, &[40_000]);
    let src = anonymous_source("demo/app", "v1", &image).await;
    let w = World::start(|c| c).await;
    w.registry("sourcereg", json!({"adminUserEnabled": true}))
        .await;
    w.registry("myregistry", json!({})).await;
    assert_eq!(
        w.import(
            "sourcereg",
            &uri_import(&src.host(), "demo/app:v1", &["app:v1"])
        )
        .await["status"],
        "Succeeded"
    );
    let password = w.list_credentials("sourcereg").await;
    let from = |creds: Value, tag: &str| {
        json!({"source": {"registryUri": "sourcereg.azurecr.io", "sourceImage": "app:v1",
                          "credentials": creds},
               "targetTags": [tag]})
    };
    let ok = w
        .import(
            "myregistry",
            &from(
                json!({"username": "sourcereg", "password": password}),
                "ok:v1",
            ),
        )
        .await;
    assert_eq!(ok["status"], "Succeeded", "{ok}");
    let bad = w
        .import(
            "myregistry",
            &from(
                json!({"username": "sourcereg", "password": "wrong"}),
                "bad:v1",
            ),
        )
        .await;
    assert_eq!(bad["status"], "Failed", "{bad}");
    assert_eq!(bad["error"]["code"], "SourceRegistryUnauthorized", "{bad}");
    // An access token as password (cross-tenant form: no username).
    let token = w.mi_token().await;
    let tok = w
        .import("myregistry", &from(json!({"password": token}), "token:v1"))
        .await;
    assert_eq!(tok["status"], "Succeeded", "{tok}");
    let backend = OciClient::new(&w.svc.login_url(), None);
    backend
        .assert_has_image("myregistry/ok", Some("v1"), &image)
        .await;
    backend
        .assert_has_image("myregistry/token", Some("v1"), &image)
        .await;
    assert!(backend
        .tags_list("myregistry/bad")
        .await
        .expect("tags")
        .is_empty());
    assert!(
        !w.svc.log().contains(&password),
        "the password reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_groups_are_resources() {
    let w = World::start(|c| c).await;
    let group = |rg: &str| {
        w.arm.url(&format!(
            "/subscriptions/{}/resourcegroups/{rg}?api-version=2022-09-01",
            w.sub
        ))
    };
    let r = w.arm.get(&group("new-rg")).await;
    assert_eq!(r.status.as_u16(), 404, "{r}");
    assert_eq!(r.assert_arm_error(), "ResourceGroupNotFound");
    let r = w
        .arm
        .send_json(
            Method::PUT,
            &group("new-rg"),
            &json!({"location": "westeurope", "tags": {"a": "b"}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{r}");
    assert_eq!(r.json()["properties"]["provisioningState"], "Succeeded");
    let r = w
        .arm
        .send_json(
            Method::PUT,
            &group("NEW-RG"),
            &json!({"location": "westeurope"}),
        )
        .await;
    assert_eq!(
        r.status.as_u16(),
        200,
        "names compare case-insensitively: {r}"
    );
    let head: ArmResponse = w
        .arm
        .send(Method::HEAD, &group("new-rg"), &[], None, None)
        .await;
    assert_eq!(head.status.as_u16(), 204);
    let head = w
        .arm
        .send(Method::HEAD, &group("missing-rg"), &[], None, None)
        .await;
    assert_eq!(head.status.as_u16(), 404);
    // A registry in a group never created makes it exist, as before.
    w.registry("implicitreg", json!({})).await;
    let r = w.arm.get(&group(RG)).await;
    assert_eq!(r.status.as_u16(), 200, "{r}");
    let list = w
        .arm
        .get(&w.arm.url(&format!(
            "/subscriptions/{}/resourcegroups?api-version=2022-09-01",
            w.sub
        )))
        .await;
    let names: Vec<String> = list.json()["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|g| g["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, [RG.to_owned(), "new-rg".to_owned()], "{list}");
    // Deleting a group deletes its registries: 202 with a status URL, then 404.
    let del = w
        .arm
        .send(Method::DELETE, &group(RG), &[], None, None)
        .await;
    assert_eq!(del.status.as_u16(), 202, "{del}");
    let done = w
        .arm
        .poll_until_done(&del.async_operation(), Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert_eq!(w.arm.get(&del.location()).await.status.as_u16(), 200);
    assert_eq!(w.arm.get(&group(RG)).await.status.as_u16(), 404);
    assert_eq!(
        w.arm
            .get_registry(&w.sub, RG, "implicitreg")
            .await
            .status
            .as_u16(),
        404
    );
    let del = w
        .arm
        .send(Method::DELETE, &group("new-rg"), &[], None, None)
        .await;
    assert_eq!(del.status.as_u16(), 202, "{del}");
    w.arm
        .poll_until_done(&del.async_operation(), Duration::from_secs(60))
        .await;
    assert_eq!(w.arm.get(&group("new-rg")).await.status.as_u16(), 404);
}

fn skopeo() -> Command {
    let found = Command::new("skopeo").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "skopeo is needed by this test (scripts/test.sh installs it)"
    );
    Command::new("skopeo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_and_pulls_through_the_proxy_with_a_refresh_token() {
    let image = TestImage::three_platform(9601);
    let src = TestRegistry::anonymous().await;
    src.client()
        .push_image("demo/multi", "v1", &image)
        .await
        .unwrap();
    let w = World::start(|c| c).await;
    w.registry("myregistry", json!({})).await;
    let c = w.https();
    let aad = w.mi_token().await;
    let refresh = json_of(exchange(&c, LS, &aad).await).await["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let certs = tempfile::tempdir().expect("cert dir");
    std::fs::copy(&w.ca, certs.path().join("ca.crt")).expect("ca.crt");
    let out = tempfile::tempdir().expect("out dir");
    let creds = format!("{ZERO_USER}:{refresh}");
    let run = |cmd: &mut Command| {
        let o = cmd
            .env("HTTPS_PROXY", format!("http://127.0.0.1:{}", w.proxy))
            .env("NO_PROXY", "127.0.0.1,localhost")
            .output()
            .expect("skopeo");
        assert!(
            o.status.success(),
            "{cmd:?}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    // Push from the plain source registry to the login server, then pull it back.
    run(skopeo().args([
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-cert-dir",
        &certs.path().display().to_string(),
        "--dest-creds",
        &creds,
        &format!("docker://{}/demo/multi:v1", src.host()),
        "docker://myregistry.azurecr.io/pushed/multi:v1",
    ]));
    run(skopeo().args([
        "copy",
        "--all",
        "--src-cert-dir",
        &certs.path().display().to_string(),
        "--src-creds",
        &creds,
        "docker://myregistry.azurecr.io/pushed/multi:v1",
        &format!("dir:{}", out.path().display()),
    ]));
    let pulled = std::fs::read(out.path().join("manifest.json")).expect("manifest");
    assert_eq!(&pulled[..], &image.top.bytes[..], "byte-identical index");
    OciClient::new(&w.svc.login_url(), None)
        .assert_has_image("myregistry/pushed/multi", Some("v1"), &image)
        .await;
    // A wrong password is refused.
    let o = skopeo()
        .args([
            "inspect",
            "--cert-dir",
            &certs.path().display().to_string(),
            "--creds",
            &format!("{ZERO_USER}:not-a-token"),
            "docker://myregistry.azurecr.io/pushed/multi:v1",
        ])
        .env("HTTPS_PROXY", format!("http://127.0.0.1:{}", w.proxy))
        .output()
        .expect("skopeo");
    assert!(!o.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_assignments_decide_data_access_per_role_assignment_mode() {
    const OWNER: &str = "11111111-1111-4111-8111-111111111111";
    const PULLER: &str = "22222222-2222-4222-8222-222222222222";
    const PUSHER: &str = "33333333-3333-4333-8333-333333333333";
    const READER: &str = "44444444-4444-4444-8444-444444444444";
    const NOBODY: &str = "55555555-5555-4555-8555-555555555555";
    const REPO_READER: &str = "66666666-6666-4666-8666-666666666666";
    let image = TestImage::single(9701, Format::Oci, &[10_000]);
    let src = anonymous_source("demo/app", "v1", &image).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sub = uuid::Uuid::new_v4().to_string();
    let reg = |n: &str| {
        format!("/subscriptions/{sub}/resourceGroups/{RG}/providers/Microsoft.ContainerRegistry/registries/{n}")
    };
    let config = json!({"roleAssignments": [
        {"principalId": OWNER, "roleDefinitionName": "Contributor", "scope": format!("/subscriptions/{sub}")},
        {"principalId": PULLER, "roleDefinitionName": "AcrPull", "scope": reg("legacyreg")},
        {"principalId": PULLER, "roleDefinitionName": "AcrPull", "scope": reg("abacreg")},
        {"principalId": PUSHER, "roleDefinitionName": "AcrPush", "scope": reg("legacyreg")},
        {"principalId": READER, "roleDefinitionName": "Reader", "scope": format!("/subscriptions/{sub}")},
        {"principalId": REPO_READER, "roleDefinitionName": "Container Registry Repository Reader", "scope": reg("abacreg")},
    ]});
    let rbac_path = dir.path().join("rbac.json");
    std::fs::write(&rbac_path, config.to_string()).expect("rbac.json");
    let key_path = dir.path().join("token.key");
    std::fs::write(&key_path, b"a-test-signing-key-of-32-bytes!!").expect("key");
    let mut w = World::start(|c| {
        c.flag("--auth", "arm-rbac")
            .flag("--rbac-config", rbac_path.display())
            .flag("--token-key-file", key_path.display())
    })
    .await;
    w.sub = sub.clone();
    let base = w.svc.base_url();
    let mi = |oid: &'static str| {
        let arm = ArmClient::new(&base);
        async move {
            let r = arm
                .send(
                    Method::GET,
                    &arm.url(&format!(
                        "/metadata/identity/oauth2/token?api-version=2019-08-01&resource=https://management.azure.com/&object_id={oid}"
                    )),
                    &[("X-IDENTITY-HEADER", "x")],
                    None,
                    None,
                )
                .await;
            let token: String = r.json()["access_token"].as_str().expect("token").to_owned();
            token
        }
    };
    let owner: String = mi(OWNER).await;
    w.arm = ArmClient::new(&base).with_bearer(&owner);
    w.registry("legacyreg", json!({})).await;
    w.registry(
        "abacreg",
        json!({"roleAssignmentMode": "AbacRepositoryPermissions"}),
    )
    .await;
    for r in ["legacyreg", "abacreg"] {
        let s = w
            .import(r, &uri_import(&src.host(), "demo/app:v1", &["app:v1"]))
            .await;
        assert_eq!(s["status"], "Succeeded", "{s}");
    }
    let c = w.https();
    // What each principal may do: (pull, push) per registry.
    let may = |oid: &'static str, registry: &'static str| {
        let c = c.clone();
        let aad = mi(oid);
        async move {
            let ls = format!("{registry}.azurecr.io");
            let aad: String = aad.await;
            let r = exchange(&c, &ls, &aad).await;
            assert_eq!(r.status(), StatusCode::OK, "{oid} exchange");
            let refresh = json_of(r).await["refresh_token"]
                .as_str()
                .expect("refresh")
                .to_owned();
            let r = token(
                &c,
                &ls,
                &[
                    ("grant_type", "refresh_token"),
                    ("service", &ls),
                    ("refresh_token", &refresh),
                    ("scope", "repository:app:pull,push"),
                ],
            )
            .await;
            let t = json_of(r).await["access_token"]
                .as_str()
                .expect("token")
                .to_owned();
            let pull = get(&c, &url(&ls, "/v2/app/manifests/v1"), Some(&t))
                .await
                .status()
                == StatusCode::OK;
            let push = c
                .post(url(&ls, "/v2/app/blobs/uploads/"))
                .bearer_auth(&t)
                .send()
                .await
                .expect("upload")
                .status()
                == StatusCode::ACCEPTED;
            (pull, push)
        }
    };
    assert_eq!(may(OWNER, "legacyreg").await, (true, true), "Contributor");
    assert_eq!(may(PULLER, "legacyreg").await, (true, false), "AcrPull");
    assert_eq!(may(PUSHER, "legacyreg").await, (true, true), "AcrPush");
    assert_eq!(
        may(READER, "legacyreg").await,
        (true, false),
        "Reader pulls (ACR's table)"
    );
    assert_eq!(may(NOBODY, "legacyreg").await, (false, false), "no role");
    // ABAC registries: the repository roles' data actions decide; AcrPull and Contributor
    // alone give no data access.
    assert_eq!(
        may(REPO_READER, "abacreg").await,
        (true, false),
        "Repository Reader"
    );
    assert_eq!(
        may(PULLER, "abacreg").await,
        (false, false),
        "AcrPull on ABAC"
    );
    assert_eq!(
        may(OWNER, "abacreg").await,
        (false, false),
        "Contributor on ABAC"
    );
    // A token not signed by the service is refused at the exchange.
    let r = exchange(
        &c,
        "legacyreg.azurecr.io",
        "eyJhbGciOiJIUzI1NiJ9.eyJvaWQiOiJ4IiwidGlkIjoieSIsImV4cCI6NDAwMDAwMDAwMH0.c2ln",
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
