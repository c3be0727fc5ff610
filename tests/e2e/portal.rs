//! The portal (issue 15): CORS on every listener (ARM routes, operation URLs, metadata and
//! token endpoints, the feed, the login servers' `/v2`, `/acr/v1` and token service), the
//! operations feed (paging, filters, no credentials, RBAC filtering), its Server-Sent Events
//! (live changes, `Last-Event-ID` resume), and the dashboard page with its
//! Content-Security-Policy. The browser suite (`tests/portal/`, Playwright driving Debian's
//! chromium) is run by `portal_browser`.

use std::time::{Duration, Instant};

use acr_import_tests::image::Format;
use acr_import_tests::{ArmClient, TestEnv, TestImage};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::anonymous_source;

const SECRET: &str = "P0rtal-S3cret-Passw0rd";
const ORIGIN: &str = "http://portal.example:9000";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn preflight(url: &str, origin: &str, method: &str) -> reqwest::Response {
    http()
        .request(Method::OPTIONS, url)
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,x-ms-client-request-id,x-ms-return-client-request-id",
        )
        .send()
        .await
        .expect("preflight")
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn assert_preflight_ok(r: &reqwest::Response, origin: &str, method: &str, what: &str) {
    assert!(r.status().is_success(), "{what}: preflight {}", r.status());
    let allow_origin = header(r, "access-control-allow-origin");
    assert!(
        allow_origin == "*" || allow_origin == origin,
        "{what}: allow-origin {allow_origin:?}"
    );
    assert!(
        header(r, "access-control-allow-methods").contains(&method.to_ascii_lowercase()),
        "{what}: methods {:?}",
        header(r, "access-control-allow-methods")
    );
    let headers = header(r, "access-control-allow-headers");
    for h in [
        "authorization",
        "content-type",
        "x-ms-client-request-id",
        "x-ms-return-client-request-id",
    ] {
        assert!(
            headers.contains(h),
            "{what}: allow-headers {headers:?} lacks {h}"
        );
    }
}

fn assert_exposed(r: &reqwest::Response, what: &str) {
    assert_eq!(header(r, "access-control-allow-origin"), "*", "{what}");
    let exposed = header(r, "access-control-expose-headers");
    for h in [
        "location",
        "azure-asyncoperation",
        "retry-after",
        "x-ms-request-id",
        "docker-content-digest",
        "link",
    ] {
        assert!(
            exposed.contains(h),
            "{what}: expose-headers {exposed:?} lacks {h}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_on_every_listener() {
    let image = TestImage::three_platform(1501);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("demo/multi", "v1", &image)
    );
    env.create_registry("CorsReg01").await;
    let (accepted, status) = env
        .import_and_wait(
            "CorsReg01",
            &json!({"source": {"registryUri": src.host(), "sourceImage": "demo/multi:v1"},
                    "targetTags": ["app:v1"]}),
        )
        .await;
    assert_eq!(status["status"], "Succeeded", "{status}");
    let arm = env.arm.base().to_owned();
    let login = env.service.login_url();
    let import_url = env.arm.import_url(&env.sub, &env.rg, "CorsReg01");
    let status_url = accepted.async_operation();
    let result_url = accepted.location();

    // Preflights: every kind of route, without any credentials.
    for (url, method) in [
        (import_url.clone(), "POST"),
        (env.arm.registry_url(&env.sub, &env.rg, "CorsReg01"), "PUT"),
        (status_url.clone(), "GET"),
        (result_url.clone(), "GET"),
        (
            format!("{arm}/metadata/endpoints?api-version=2022-09-01"),
            "GET",
        ),
        (format!("{arm}/metadata/identity/oauth2/token"), "GET"),
        (format!("{arm}/_acr-import/operations"), "GET"),
        (format!("{arm}/_acr-import/operations/events"), "GET"),
        (format!("{login}/v2/"), "GET"),
        (format!("{login}/v2/corsreg01/app/manifests/v1"), "GET"),
        (format!("{login}/acr/v1/_catalog"), "GET"),
        (format!("{login}/oauth2/token"), "POST"),
        (format!("{login}/oauth2/exchange"), "POST"),
    ] {
        let r = preflight(&url, ORIGIN, method).await;
        assert_preflight_ok(&r, ORIGIN, method, &url);
    }

    // Real answers name the origin and expose the headers a page must read.
    let post = http()
        .post(&import_url)
        .header("Origin", ORIGIN)
        .header("Content-Type", "application/json")
        .body(
            json!({"source": {"registryUri": src.host(), "sourceImage": "demo/multi:v1"},
                   "targetTags": ["app:v2"]})
            .to_string(),
        )
        .send()
        .await
        .expect("post");
    assert!(post.status().is_success(), "{}", post.status());
    assert_exposed(&post, "importImage");
    let status = http()
        .get(&status_url)
        .header("Origin", ORIGIN)
        .send()
        .await
        .expect("status");
    assert_exposed(&status, "operationStatuses");
    let manifest = http()
        .get(format!("{login}/v2/corsreg01/app/manifests/v1"))
        .header("Origin", ORIGIN)
        .header("Accept", "application/vnd.oci.image.index.v1+json")
        .send()
        .await
        .expect("manifest");
    assert_eq!(manifest.status().as_u16(), 200);
    assert_exposed(&manifest, "/v2 manifest");
    assert!(manifest.headers().contains_key("docker-content-digest"));
    let missing = http()
        .get(format!("{arm}/subscriptions/{}/resourceGroups/nope/providers/Microsoft.ContainerRegistry/registries/NoSuchReg?api-version=2025-11-01", env.sub))
        .header("Origin", ORIGIN)
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status().as_u16(), 404);
    assert_exposed(&missing, "an ARM error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_origins_can_be_narrowed() {
    let env = TestEnv::start_with(|c| {
        c.flag("--cors-origin", ORIGIN)
            .flag("--cors-origin", "https://other.example")
    })
    .await;
    let url = format!("{}/_acr-import/operations", env.arm.base());
    let ok = preflight(&url, ORIGIN, "GET").await;
    assert_eq!(header(&ok, "access-control-allow-origin"), ORIGIN);
    let login = preflight(
        &format!("{}/v2/", env.service.login_url()),
        "https://other.example",
        "GET",
    )
    .await;
    assert_eq!(
        header(&login, "access-control-allow-origin"),
        "https://other.example"
    );
    let foreign = preflight(&url, "http://evil.example", "GET").await;
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "an origin not listed gets no grant"
    );
}

async fn get_json(url: &str, bearer: Option<&str>) -> (u16, Value, String) {
    let mut req = http().get(url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("get");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_pages_filters_and_never_shows_credentials() {
    let image = TestImage::single(1502, Format::Oci, &[2048]);
    let (env, src) = tokio::join!(TestEnv::start(), anonymous_source("demo/one", "v1", &image));
    env.create_registry("FeedRegA1").await;
    env.create_registry("FeedRegB1").await;
    let body = |tag: &str| {
        json!({"source": {"registryUri": src.host(), "sourceImage": "demo/one:v1",
                          "credentials": {"username": "someone", "password": SECRET}},
               "targetTags": [tag], "mode": "Force"})
    };
    let mut ids = Vec::new();
    for (reg, tag) in [
        ("FeedRegA1", "a:1"),
        ("FeedRegA1", "a:2"),
        ("FeedRegB1", "b:1"),
        ("FeedRegA1", "a:3"),
    ] {
        let r = env.arm.import(&env.sub, &env.rg, reg, &body(tag)).await;
        assert!(r.status.is_success(), "{r}");
        // The operation id is in the status URL (or, for a 200, found in the feed later).
        if let Some(url) = r.header("azure-asyncoperation") {
            let st = env.arm.poll_until_done(url, Duration::from_secs(60)).await;
            assert_eq!(st["status"], "Succeeded", "{st}");
            ids.push(st["name"].as_str().unwrap_or_default().to_owned());
        }
    }
    let base = format!("{}/_acr-import/operations", env.arm.base());

    // Everything, newest first; nothing of the credentials.
    let (status, all, text) = get_json(&base, None).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(SECRET), "the feed shows a password: {text}");
    let all = all["value"].as_array().cloned().unwrap_or_default();
    assert_eq!(all.len(), 4, "{text}");
    let created: Vec<&str> = all
        .iter()
        .map(|o| o["createdAt"].as_str().unwrap_or_default())
        .collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted, "newest first");
    for id in &ids {
        assert!(all.iter().any(|o| &o["id"] == id), "{id} missing");
    }
    let first = &all[0];
    assert_eq!(first["registry"]["name"], "FeedRegA1");
    assert_eq!(first["source"]["sourceImage"], "demo/one:v1");
    assert_eq!(first["targetTags"], json!(["a:3"]));
    assert_eq!(first["status"], "Succeeded");
    assert_eq!(first["percentComplete"], 100.0);
    assert_eq!(first["mode"], "Force");
    assert!(
        first["progress"]["manifestsTotal"].as_u64().unwrap_or(0) > 0,
        "{first}"
    );
    assert!(first["startedAt"].is_string() && first["endedAt"].is_string());
    // Its ARM status is one request away.
    let (s, st, _) = get_json(first["statusUrl"].as_str().unwrap_or_default(), None).await;
    assert_eq!((s, st["status"].clone()), (200, json!("Succeeded")));

    // Pages of two follow nextLink to the same list.
    let mut seen = Vec::new();
    let mut next = Some(format!("{base}?top=2"));
    while let Some(url) = next {
        let (s, page, text) = get_json(&url, None).await;
        assert_eq!(s, 200, "{text}");
        let v = page["value"].as_array().cloned().unwrap_or_default();
        assert!(v.len() <= 2);
        seen.extend(v.iter().map(|o| o["id"].clone()));
        next = page["nextLink"].as_str().map(str::to_owned);
        assert!(seen.len() <= 4, "paging does not end");
    }
    let all_ids: Vec<Value> = all.iter().map(|o| o["id"].clone()).collect();
    assert_eq!(seen, all_ids);

    // Filters.
    let (_, b, _) = get_json(&format!("{base}?registry=feedregb1"), None).await;
    assert_eq!(b["value"].as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(b["value"][0]["targetTags"], json!(["b:1"]));
    let (_, failed, _) = get_json(&format!("{base}?state=Failed"), None).await;
    assert_eq!(failed["value"], json!([]));
    let (s, bad, _) = get_json(&format!("{base}?top=0"), None).await;
    assert_eq!(s, 400);
    assert!(bad["error"]["code"].is_string(), "{bad}");
    let (s, _, _) = get_json(&format!("{base}?skipToken=nonsense"), None).await;
    assert_eq!(s, 400);
}

/// Reads a Server-Sent Events stream until `done` says so or the deadline passes; returns
/// the events as (event, id, data).
async fn read_events(
    url: &str,
    last_event_id: Option<&str>,
    bearer: Option<&str>,
    deadline: Duration,
    mut done: impl FnMut(&[(String, String, Value)]) -> bool,
) -> Vec<(String, String, Value)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut req = client.get(url).header("Accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let mut resp = req.send().await.expect("events");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(header(&resp, "content-type").starts_with("text/event-stream"));
    let end = Instant::now() + deadline;
    let mut buf = String::new();
    let mut events = Vec::new();
    while Instant::now() < end && !done(&events) {
        let left = end.saturating_duration_since(Instant::now());
        let Ok(chunk) = tokio::time::timeout(left, resp.chunk()).await else {
            break;
        };
        let Some(chunk) = chunk.expect("stream") else {
            break;
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(cut) = buf.find("\n\n") {
            let block: String = buf.drain(..cut + 2).collect();
            let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                events.push((event, id, serde_json::from_str(&data).expect("event data")));
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_an_import_and_resume_after_last_event_id() {
    let image = TestImage::three_platform(1503);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("demo/multi", "v1", &image)
    );
    env.create_registry("EventReg01").await;
    let url = format!("{}/_acr-import/operations/events", env.arm.base());
    let body = json!({"source": {"registryUri": src.host(), "sourceImage": "demo/multi:v1",
                                 "credentials": {"username": "u", "password": SECRET}},
                      "targetTags": ["app:v1"]});
    // From the start of the sequence (this service has no operation yet): the stream sees
    // the import that follows, to its end, whenever it is opened.
    let reader = tokio::spawn({
        let url = url.clone();
        async move {
            read_events(&url, Some("0"), None, Duration::from_secs(60), |evs| {
                evs.iter().any(|(e, _, _)| e == "finished")
            })
            .await
        }
    });
    let r = env.arm.import(&env.sub, &env.rg, "EventReg01", &body).await;
    assert!(r.status.is_success(), "{r}");
    let events = reader.await.expect("reader");
    let (last_event, last_id, last) = events.last().cloned().expect("events");
    assert_eq!(last_event, "finished", "{events:?}");
    assert_eq!(last["status"], "Succeeded");
    assert_eq!(last["percentComplete"], 100.0);
    let op_id = last["id"].as_str().unwrap_or_default().to_owned();
    assert!(events
        .iter()
        .all(
            |(e, _, d)| ["created", "progress", "finished"].contains(&e.as_str())
                && d["id"] == op_id.as_str()
        ));
    let ids: Vec<i64> = events
        .iter()
        .map(|(_, id, _)| id.parse().expect("numeric id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    assert!(
        !format!("{events:?}").contains(SECRET),
        "no credentials in events"
    );

    // Resume: after the first event, the stream replays what changed since (the end).
    let first = ids[0] - 1;
    let replay = read_events(
        &url,
        Some(&first.to_string()),
        None,
        Duration::from_secs(20),
        |evs| evs.iter().any(|(e, _, _)| e == "finished"),
    )
    .await;
    let (e, id, d) = replay.last().cloned().expect("replayed");
    assert_eq!((e.as_str(), d["id"].clone()), ("finished", json!(op_id)));
    assert_eq!(id, last_id);
    // After the last event: nothing more (a short wait sees no event).
    let quiet = read_events(&url, Some(&last_id), None, Duration::from_secs(2), |_| {
        false
    })
    .await;
    assert!(quiet.is_empty(), "{quiet:?}");
    // A bad id is an ARM error.
    let (s, bad, _) = get_json(&format!("{url}?lastEventId=x"), None).await;
    assert_eq!(s, 400, "{bad}");
}

const OWNER: &str = "15151515-1111-4111-8111-111111111111";
const READER_A: &str = "15151515-2222-4222-8222-222222222222";

/// A service with `--auth arm-rbac`: an owner of the subscription, a reader of one registry.
async fn rbac_env(sub: &str, rg: &str) -> (TestEnv, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let reg_a = format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/RbacFeedA"
    );
    let config = json!({"roleAssignments": [
        {"principalId": OWNER, "roleDefinitionName": "Owner", "scope": format!("/subscriptions/{sub}")},
        {"principalId": READER_A, "roleDefinitionName": "Reader", "scope": reg_a},
    ]});
    let path = dir.path().join("rbac.json");
    std::fs::write(&path, config.to_string()).expect("rbac.json");
    let key = dir.path().join("token.key");
    std::fs::write(&key, b"a-portal-signing-key-of-32-bytes").expect("key");
    let mut env = TestEnv::start_with(|c| {
        c.flag("--auth", "arm-rbac")
            .flag("--rbac-config", path.display())
            .flag("--token-key-file", key.display())
    })
    .await;
    env.sub = sub.to_owned();
    env.rg = rg.to_owned();
    (env, dir)
}

/// A token of the service's managed-identity endpoint for `oid`.
async fn token_for(env: &TestEnv, oid: &str) -> String {
    let url = format!(
        "{}/metadata/identity/oauth2/token?api-version=2019-08-01&resource=https%3A%2F%2F127.0.0.1%2F&object_id={oid}",
        env.arm.base()
    );
    let r = env
        .arm
        .send(Method::GET, &url, &[("X-IDENTITY-HEADER", "x")], None, None)
        .await;
    assert_eq!(r.status.as_u16(), 200, "{r}");
    r.json()["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_shows_only_registries_the_caller_may_read() {
    let sub = uuid::Uuid::new_v4().to_string();
    let image = TestImage::single(1504, Format::Oci, &[1024]);
    let ((env, _dir), src) = tokio::join!(
        rbac_env(&sub, "feed-rg"),
        anonymous_source("demo/one", "v1", &image)
    );
    let owner = token_for(&env, OWNER).await;
    let reader = token_for(&env, READER_A).await;
    let arm = ArmClient::new(env.arm.base()).with_bearer(&owner);
    for reg in ["RbacFeedA", "RbacFeedB"] {
        arm.create_registry(&env.sub, &env.rg, reg).await;
        let r = arm
            .import(
                &env.sub,
                &env.rg,
                reg,
                &json!({"source": {"registryUri": src.host(), "sourceImage": "demo/one:v1"},
                        "targetTags": ["one:v1"]}),
            )
            .await;
        assert!(r.status.is_success(), "{r}");
        if let Some(url) = r.header("azure-asyncoperation") {
            let st = arm.poll_until_done(url, Duration::from_secs(60)).await;
            assert_eq!(st["status"], "Succeeded", "{st}");
        }
    }
    let base = format!("{}/_acr-import/operations", env.arm.base());
    // No token: ARM's 401. A preflight needs none.
    let (s, none, _) = get_json(&base, None).await;
    assert_eq!(s, 401, "{none}");
    assert_eq!(none["error"]["code"], "AuthenticationFailed");
    assert_preflight_ok(
        &preflight(&base, ORIGIN, "GET").await,
        ORIGIN,
        "GET",
        "rbac",
    );
    // The owner sees both; the reader of A only A's.
    let (_, all, _) = get_json(&base, Some(&owner)).await;
    assert_eq!(all["value"].as_array().map(Vec::len), Some(2), "{all}");
    let (_, mine, _) = get_json(&base, Some(&reader)).await;
    let mine = mine["value"].as_array().cloned().unwrap_or_default();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["registry"]["name"], "RbacFeedA");
    // Paging by one does not reveal B either.
    let (_, page, _) = get_json(&format!("{base}?top=1"), Some(&reader)).await;
    assert_eq!(page["value"][0]["registry"]["name"], "RbacFeedA");
    assert!(page["nextLink"].is_null(), "{page}");
    // The event stream filters the same way.
    let events = read_events(
        &format!("{base}/events"),
        Some("0"),
        Some(&reader),
        Duration::from_secs(3),
        |_| false,
    )
    .await;
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|(_, _, d)| d["registry"]["name"] == "RbacFeedA"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_with_a_strict_policy() {
    let env = TestEnv::start().await;
    let r = http()
        .get(format!("{}/", env.arm.base()))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status().as_u16(), 200);
    assert!(header(&r, "content-type").starts_with("text/html"));
    let csp = header(&r, "content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(
        csp.contains(&env.service.login_url()),
        "the registries' listener may be reached: {csp}"
    );
    let html = r.text().await.expect("html");
    assert!(html.contains("/_acr-import/portal/app.js"));
    for (path, kind) in [
        ("/_acr-import/portal/app.js", "text/javascript"),
        ("/_acr-import/portal/app.css", "text/css"),
    ] {
        let a = http()
            .get(format!("{}{path}", env.arm.base()))
            .send()
            .await
            .expect("asset");
        assert_eq!(a.status().as_u16(), 200, "{path}");
        assert!(header(&a, "content-type").starts_with(kind), "{path}");
    }
    let (s, config, _) = get_json(
        &format!("{}/_acr-import/portal/config", env.arm.base()),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(config["auth"], "none");
    assert_eq!(config["registryEndpoint"], env.service.login_url().as_str());
    assert_eq!(config["loginServerSuffix"], "azurecr.io");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_operations_leave_the_feed() {
    let image = TestImage::single(1506, Format::Oci, &[1024]);
    let (env, src) = tokio::join!(
        TestEnv::start_with(|c| c.flag("--operation-retention-seconds", 1)),
        anonymous_source("demo/one", "v1", &image)
    );
    env.create_registry("ExpireReg1").await;
    let r = env
        .arm
        .import(
            &env.sub,
            &env.rg,
            "ExpireReg1",
            &json!({"source": {"registryUri": src.host(), "sourceImage": "demo/one:v1"},
                    "targetTags": ["one:v1"]}),
        )
        .await;
    assert!(r.status.is_success(), "{r}");
    let base = format!("{}/_acr-import/operations", env.arm.base());
    // Shown while it runs and just after; gone once its results expire, like its status URL.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = false;
    loop {
        let (s, page, text) = get_json(&base, None).await;
        assert_eq!(s, 200, "{text}");
        let n = page["value"].as_array().map(Vec::len).unwrap_or(0);
        seen |= n == 1;
        if seen && n == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never shown, or never expired: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
