//! Tokens that expire during a copy, and refresh-token credentials (the OAuth2 POST grant).

use std::time::{Duration, Instant};

use acr_import_tests::fault_proxy::{Action, FaultProxy, Kind, Rule};
use acr_import_tests::image::Format;
use acr_import_tests::{TestEnv, TestImage, TestRegistry, TokenServerConfig};
use serde_json::json;

use crate::common::{
    assert_blob_bytes, assert_failed, assert_succeeded, proxied_source, target, REG,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_token_expiring_mid_copy_is_renewed() {
    let image = TestImage::single(1501, Format::Oci, &[1000, 7 << 20]);
    // Backend with token auth; tokens say `expires_in: 2` and really stop working after
    // about 2 s (their `exp` is backdated by docker-registry's 60 s leeway).
    let backend = TestRegistry::token_with(TokenServerConfig {
        expires_in: 2,
        ..TokenServerConfig::default()
    })
    .await;
    backend.token_server().unwrap().set_exp_backdate(60);
    let backend_proxy = FaultProxy::start(&backend.url()).await;
    let proxy_url = backend_proxy.url();
    let (env, (_src, src_proxy)) = tokio::join!(
        TestEnv::start_with_backend(backend, |mut c| {
            c.backend_registry = Some(proxy_url);
            c
        }),
        proxied_source("demo/slow", "v1", &image)
    );
    env.create_registry(REG).await;
    // 1 MiB/s per response: the 7 MiB layer streams for ~7 s, far beyond a token's life.
    src_proxy.add_rule(Rule::new(Action::Throttle(1 << 20)).kind(Kind::BlobGet));
    let ts = env.external_backend().token_server().unwrap();
    let before = ts.tokens_issued();

    let started = Instant::now();
    let body = json!({
        "source": {"registryUri": src_proxy.host(), "sourceImage": "demo/slow:v1"},
        "targetTags": ["imported/slow:v1"],
    });
    let status = env.import_ok(REG, &body).await;
    let took = started.elapsed();
    assert_succeeded(&status);
    let issued = ts.tokens_issued() - before;
    let unauthorized = backend_proxy
        .log()
        .iter()
        .filter(|e| e.status == 401)
        .count();
    eprintln!(
        "token expiry: copy took {took:?}, {issued} tokens issued, {unauthorized} 401s at the backend"
    );
    assert!(
        took >= Duration::from_secs(6),
        "the copy was too fast ({took:?}) to outlive a token"
    );
    assert!(
        issued >= 2,
        "only {issued} backend token(s) for a {took:?} copy with 2 s tokens\n{}",
        backend_proxy.log_text()
    );
    let backend_client = env.backend_client();
    backend_client
        .assert_has_image(&target("imported/slow"), Some("v1"), &image)
        .await;
    assert_blob_bytes(&backend_client, &target("imported/slow"), &image).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_credentials_use_the_oauth2_post_grant() {
    const REFRESH: &str = "refresh-7b1d0c55-acr-import-tests";
    let image = TestImage::single(1502, Format::Docker, &[1500, 40_000]);
    let (env, src) = tokio::join!(TestEnv::start(), TestRegistry::token());
    src.client()
        .push_image("private/app", "v1", &image)
        .await
        .unwrap();
    let ts = src.token_server().unwrap();
    ts.set_refresh_token(Some(REFRESH));
    let proxy = FaultProxy::start(&src.url()).await;
    env.create_registry(REG).await;

    let body = |password: &str, tag: &str| {
        json!({
            "source": {
                "registryUri": proxy.host(),
                "sourceImage": "private/app:v1",
                "credentials": {"password": password},
            },
            "targetTags": [format!("imported/app:{tag}")],
        })
    };
    let status = env.import_ok(REG, &body(REFRESH, "v1")).await;
    assert_succeeded(&status);
    let backend = env.backend_client();
    backend
        .assert_has_image(&target("imported/app"), Some("v1"), &image)
        .await;

    let log = proxy.log_text();
    let posts = ts.post_log();
    let refreshes: Vec<_> = posts
        .iter()
        .filter(|p| p.grant_type.as_deref() == Some("refresh_token"))
        .collect();
    assert!(
        !refreshes.is_empty(),
        "no refresh_token POST to the realm: {posts:?}\n{log}"
    );
    for p in &refreshes {
        assert!(p.granted, "{p:?}");
        assert_eq!(p.refresh_token.as_deref(), Some(REFRESH), "{p:?}");
        assert_eq!(p.client_id.as_deref(), Some("acr-import"), "{p:?}");
        assert_eq!(p.service.as_deref(), Some(ts.service()), "{p:?}");
    }
    assert!(
        refreshes.iter().any(|p| p
            .scopes
            .iter()
            .any(|s| s.starts_with("repository:private/app:") && s.contains("pull"))),
        "no refresh POST asked for repository:private/app:pull: {refreshes:?}"
    );
    // The refresh token was first presented as a bearer token, then access tokens were used.
    let entries = proxy.log();
    let bearer_refresh = format!("Bearer {REFRESH}");
    assert!(
        entries
            .iter()
            .any(|e| e.authorization.as_deref() == Some(bearer_refresh.as_str())),
        "the refresh token was never tried as a bearer token:\n{log}"
    );
    assert!(
        entries.iter().any(|e| e.kind == Kind::BlobGet
            && e.status == 200
            && e.authorization
                .as_deref()
                .is_some_and(|a| { a.starts_with("Bearer ") && a != bearer_refresh })),
        "no blob was read with an access token:\n{log}"
    );
    assert!(
        !env.service.log().contains(REFRESH),
        "the refresh token appears in the service log"
    );

    // A refresh token the server doesn't know: SourceRegistryUnauthorized, nothing copied.
    let (_, status) = env
        .import_and_wait(REG, &body("refresh-unknown", "v2"))
        .await;
    assert_failed(&status, "SourceRegistryUnauthorized");
    assert_eq!(
        backend.tags_list(&target("imported/app")).await.unwrap(),
        vec!["v1"]
    );
}
