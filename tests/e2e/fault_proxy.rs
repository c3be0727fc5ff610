//! Self-tests of the fault-injection proxy and the token server's refresh-token grant (no
//! acr-import binary needed).

use std::time::{Duration, Instant};

use acr_import_tests::fault_proxy::{Action, FaultProxy, Kind, Rule};
use acr_import_tests::image::{Format, OCI_MANIFEST};
use acr_import_tests::oci::Credentials;
use acr_import_tests::util::{http_client, sha256_digest};
use acr_import_tests::{OciClient, TestImage, TestRegistry};
use bytes::Bytes;

use crate::common::proxied_private_source;

/// GETs `url` (from byte `from` on, with `Range: bytes=<from>-`): the status and the body.
async fn get(http: &reqwest::Client, url: &str, from: Option<u64>) -> (u16, Bytes) {
    let mut req = http.get(url);
    if let Some(n) = from {
        req = req.header("Range", format!("bytes={n}-"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_counts_and_injects_faults() {
    let reg = TestRegistry::anonymous().await;
    let proxy = FaultProxy::start(&reg.url()).await;
    let via = OciClient::new(&proxy.url(), None);
    let image = TestImage::single(31, Format::Oci, &[2 << 20]);
    let layer = image.blobs[1].clone();

    // Pushing through the proxy works (absolute upload Locations are rewritten to the proxy).
    via.push_image("p/img", "v1", &image).await.unwrap();
    assert_eq!(proxy.count(Kind::UploadPost), 2, "{}", proxy.log_text());
    assert_eq!(proxy.count(Kind::UploadPut), 2);
    assert_eq!(proxy.count(Kind::ManifestPut), 1);
    assert!(proxy.stats(Kind::UploadPut).request_bytes >= 2 << 20);
    via.assert_has_image("p/img", Some("v1"), &image).await;
    let (d, n) = via.blob_digest("p/img", &layer.digest).await.unwrap();
    assert_eq!((d.as_str(), n), (layer.digest.as_str(), layer.size));
    assert!(proxy.bytes_sent(Kind::BlobGet) >= layer.size);
    assert_eq!(proxy.stats(Kind::BlobGet).in_flight, 0);

    let http = http_client();
    let blob_url = format!("{}/v2/p/img/blobs/{}", proxy.url(), layer.digest);

    // CutAfter: the body ends early with an error.
    let cut = proxy.add_rule(
        Rule::new(Action::CutAfter(100_000))
            .kind(Kind::BlobGet)
            .first(1),
    );
    // The cut may land before or after the client has read the headers.
    let cut_seen = match http.get(&blob_url).send().await {
        Ok(resp) => {
            assert_eq!(resp.status(), 200);
            resp.bytes().await.is_err()
        }
        Err(_) => true,
    };
    assert!(cut_seen, "a cut body must not end cleanly");
    assert_eq!(proxy.rule_hits(cut), 1);
    // Only the first: the next GET is whole, and a Range GET gets 206.
    let (status, body) = get(&http, &blob_url, Some(100)).await;
    assert_eq!(status, 206);
    assert_eq!(body.len() as u64, layer.size - 100);
    let last = proxy.log_of(Kind::BlobGet).pop().unwrap();
    assert_eq!(last.range_start(), Some(100));

    // StripRange: the upstream answers 200 with everything.
    proxy.add_rule(Rule::new(Action::StripRange).path(&layer.digest));
    let (status, body) = get(&http, &blob_url, Some(100)).await;
    assert_eq!(status, 200);
    assert_eq!(body.len() as u64, layer.size);
    proxy.clear_rules();

    // Status: 429 twice, then through.
    let r429 = proxy.add_rule(
        Rule::new(Action::too_many_requests(1))
            .kind(Kind::ManifestGet)
            .first(2),
    );
    for want in [429, 429, 200] {
        let resp = http
            .get(format!("{}/v2/p/img/manifests/v1", proxy.url()))
            .header("Accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want);
        if want == 429 {
            assert_eq!(resp.headers()["retry-after"], "1");
            assert!(resp.text().await.unwrap().contains("TOOMANYREQUESTS"));
        }
    }
    assert_eq!(proxy.rule_hits(r429), 2);

    // Throttle: 2 MiB at 4 MiB/s takes about half a second.
    proxy.add_rule(Rule::new(Action::Throttle(4 << 20)).kind(Kind::BlobGet));
    let started = Instant::now();
    let (status, body) = get(&http, &blob_url, None).await;
    assert_eq!(status, 200);
    assert_eq!(body.len() as u64, layer.size);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    proxy.clear_rules();

    // Corrupt: same length, another digest.
    proxy.add_rule(Rule::new(Action::Corrupt).path(&layer.digest));
    let (status, body) = get(&http, &blob_url, None).await;
    assert_eq!(status, 200);
    assert_eq!(body.len() as u64, layer.size);
    assert_ne!(sha256_digest(&body), layer.digest);
    proxy.clear_rules();

    // Stall: headers and some bytes, then silence.
    proxy.add_rule(Rule::new(Action::Stall { after_bytes: 1000 }).kind(Kind::BlobGet));
    let resp = http.get(&blob_url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let read = tokio::time::timeout(Duration::from_millis(700), resp.bytes()).await;
    assert!(read.is_err(), "a stalled body must not finish");
    proxy.clear_rules();

    // ServeManifest.
    let fake = Bytes::from_static(br#"{"schemaVersion":1,"name":"x"}"#);
    proxy.add_rule(
        Rule::new(Action::ServeManifest {
            content_type: "application/vnd.docker.distribution.manifest.v1+prettyjws".into(),
            body: fake.clone(),
        })
        .path("/old/"),
    );
    let resp = http
        .get(format!("{}/v2/old/manifests/v1", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["docker-content-digest"].to_str().unwrap(),
        sha256_digest(&fake)
    );
    assert_eq!(resp.bytes().await.unwrap(), fake);
    let head = http
        .head(format!("{}/v2/old/manifests/v1", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        fake.len().to_string()
    );
    proxy.clear_rules();

    // RejectMonolithicPut: the harness client pushes monolithically, so it gets the 413.
    proxy.add_rule(Rule::new(Action::reject_monolithic_put(Some(6 << 20))));
    let other = TestImage::single(32, Format::Oci, &[1 << 20]);
    let err = via.push_image("p/other", "v1", &other).await.unwrap_err();
    assert!(format!("{err:#}").contains("413"), "{err:#}");
    assert!(proxy
        .log_of(Kind::UploadPost)
        .last()
        .is_some_and(|e| e.status == 202));
    proxy.clear_rules();

    // The log records what the brief asks for.
    let entries = proxy.log();
    assert!(
        entries.iter().all(|e| e.status != 0),
        "{}",
        proxy.log_text()
    );
    assert!(entries
        .iter()
        .any(|e| e.kind == Kind::UploadPut && e.content_length.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_target_fetches_with_its_own_credentials() {
    let image = TestImage::single(33, Format::Oci, &[300_000]);
    let creds = Credentials::new("ruser", "rpass-1");
    let (_reg, proxy) = proxied_private_source(&creds, "r/img", "v1", &image).await;
    proxy.add_rule(Rule::new(Action::Redirect { to: None }));
    let layer = &image.blobs[1];

    // A client that follows redirects (reqwest drops Authorization across hosts).
    let via = OciClient::new(&proxy.url(), Some(creds));
    let (d, n) = via.blob_digest("r/img", &layer.digest).await.unwrap();
    assert_eq!((d.as_str(), n), (layer.digest.as_str(), layer.size));
    let gets = proxy.log_of(Kind::BlobGet);
    assert_eq!(gets.len(), 1, "{}", proxy.log_text());
    assert_eq!(gets[0].status, 307);
    assert!(gets[0].has_authorization());
    let hits = proxy.redirect_hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(!hits[0].had_authorization, "{hits:?}");
    assert_eq!(hits[0].status, 200);

    // The target does record an Authorization header when one is sent.
    let resp = http_client()
        .get(format!(
            "{}/{}?repo=r%2Fimg",
            proxy.redirect_target(),
            layer.digest
        ))
        .header("Authorization", "Bearer leaked")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(proxy.redirect_hits()[1].had_authorization);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_server_refresh_token_grant() {
    let reg = TestRegistry::token().await;
    let ts = reg.token_server().unwrap();
    ts.set_refresh_token(Some("refresh-xyz"));
    let http = http_client();
    let form = |token: &str| {
        format!(
            "grant_type=refresh_token&refresh_token={token}&service={}&scope=repository%3Ademo%2Fx%3Apull&client_id=acr-import",
            ts.service()
        )
    };
    let ok = http
        .post(ts.realm())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form("refresh-xyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let v: serde_json::Value = ok.json().await.unwrap();
    let token = v["access_token"].as_str().unwrap().to_string();
    let bad = http
        .post(ts.realm())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let posts = ts.post_log();
    assert_eq!(posts.len(), 2);
    assert!(posts[0].granted && !posts[1].granted);
    assert_eq!(posts[0].client_id.as_deref(), Some("acr-import"));
    assert_eq!(posts[0].scopes, vec!["repository:demo/x:pull"]);
    assert_eq!(ts.refresh_posts(), 2);

    // The access token works on the registry.
    let resp = http
        .get(format!("{}/v2/demo/x/tags/list", reg.url()))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    // 404 NAME_UNKNOWN: authorized, the repository just doesn't exist.
    assert_eq!(resp.status(), 404, "{}", resp.text().await.unwrap());
}

/// docker-registry enforces `exp` with a 60 s leeway: a token minted with `expires_in` 2 s
/// and `exp` backdated by 60 s works at first and gets 401 within a few seconds (what the
/// token-expiry test relies on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_rejects_expired_tokens() {
    use acr_import_tests::token_server::Access;
    let reg = TestRegistry::token().await;
    let ts = reg.token_server().unwrap();
    ts.set_expires_in(2);
    ts.set_exp_backdate(60);
    let token = ts.mint(
        ts.username(),
        &[Access {
            kind: "repository".into(),
            name: "demo/x".into(),
            actions: vec!["pull".into()],
        }],
    );
    let http = http_client();
    let url = format!("{}/v2/demo/x/tags/list", reg.url());
    let status = |http: reqwest::Client, url: String, token: String| async move {
        http.get(url)
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status(http.clone(), url.clone(), token.clone()).await, 404);
    let started = Instant::now();
    acr_import_tests::util::poll_until(
        "the registry to refuse the expired token",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            async move { (status(http, url, token).await == 401).then_some(()) }
        },
    )
    .await;
    eprintln!("token refused {:?} after minting", started.elapsed());
}
