//! Security (issue 5): credentials never leak and are encrypted at rest, SSRF defences, queue
//! limits answered with 429.

use std::time::Duration;

use acr_import_tests::image::Format;
use acr_import_tests::{TestEnv, TestImage, TestRegistry, ThrottleProxy};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::common::{assert_failed, held_source, uri_import, REG};

/// A tiny source registry whose every answer is `respond` (a stand-in for a hostile registry).
async fn hostile_source(respond: fn() -> Response) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let app = axum::Router::new().fallback(move || async move { respond() });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (host, task)
}

fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !text.contains(s.as_str()),
            "a secret ({}…) appears in {what}",
            &s[..s.len().min(6)]
        );
    }
}

/// Imports with source credentials (Basic and token auth; success, wrong password, failure at
/// the source) at RUST_LOG=debug: neither the password nor any issued bearer token appears in
/// the service log or any API answer, and the credentials column is NULL once they end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_leak() {
    let image = TestImage::single(501, Format::Oci, &[3000]);
    let basic = TestRegistry::htpasswd("leaky", "B4sic-Secret-Pw!").await;
    basic
        .client()
        .push_image("private/app", "v1", &image)
        .await
        .expect("push");
    let tok = TestRegistry::token().await;
    tok.client()
        .push_image("private/app", "v1", &image)
        .await
        .expect("push");
    let ts = tok.token_server().expect("token server");
    let env = TestEnv::start_with(|c| c.env("RUST_LOG", "debug")).await;
    env.create_registry(REG).await;

    let body = |host: &str, image: &str, user: &str, pass: &str, tag: &str| {
        json!({"source": {"registryUri": host, "sourceImage": image,
                          "credentials": {"username": user, "password": pass}},
               "targetTags": [tag]})
    };
    let cases = [
        (
            body(
                &basic.host(),
                "private/app:v1",
                "leaky",
                "B4sic-Secret-Pw!",
                "a:1",
            ),
            "Succeeded",
        ),
        (
            body(
                &basic.host(),
                "private/app:v1",
                "leaky",
                "Wrong-Secret-Pw!",
                "a:2",
            ),
            "Failed",
        ),
        (
            body(
                &basic.host(),
                "private/none:v1",
                "leaky",
                "B4sic-Secret-Pw!",
                "a:3",
            ),
            "Failed",
        ),
        (
            body(
                &tok.host(),
                "private/app:v1",
                ts.username(),
                ts.password(),
                "b:1",
            ),
            "Succeeded",
        ),
        (
            body(
                &tok.host(),
                "private/app:v1",
                ts.username(),
                "Tok-Wrong-Secret",
                "b:2",
            ),
            "Failed",
        ),
        (
            body(
                &tok.host(),
                "private/none:v1",
                ts.username(),
                ts.password(),
                "b:3",
            ),
            "Failed",
        ),
    ];
    let mut answers = String::new();
    let mut ids = Vec::new();
    for (b, want) in &cases {
        let (accepted, status) = env.import_and_wait(REG, b).await;
        assert_eq!(status["status"], *want, "{status}");
        answers.push_str(&accepted.text());
        answers.push_str(&status.to_string());
        let loc = env.arm.get(&accepted.location()).await;
        answers.push_str(&loc.text());
        ids.push(status["name"].as_str().expect("name").to_owned());
    }
    answers.push_str(&env.arm.get_registry(&env.sub, &env.rg, REG).await.text());
    answers.push_str(
        &env.arm
            .list_registries_in_subscription(&env.sub)
            .await
            .text(),
    );

    let mut secrets: Vec<String> = [
        "B4sic-Secret-Pw!",
        "Wrong-Secret-Pw!",
        "Tok-Wrong-Secret",
        ts.password(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let tokens = ts.issued_tokens();
    assert!(!tokens.is_empty(), "the token server issued no token");
    secrets.extend(tokens);
    let log = env.service.log();
    assert!(
        log.contains("DEBUG"),
        "the service did not log at debug level"
    );
    assert_no_secret("the service log", &log, &secrets);
    assert_no_secret("an API answer", &answers, &secrets);

    let pool = sqlx::PgPool::connect(env.db.url()).await.expect("db");
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("select id, state, credentials::text from operations")
            .fetch_all(&pool)
            .await
            .expect("rows");
    assert_eq!(rows.len(), cases.len());
    for (id, state, creds) in rows {
        assert!(ids.contains(&id));
        assert!(creds.is_none(), "{id} ({state}) still holds credentials");
    }
}

/// With --credentials-key-file, the row of a running import holds only ciphertext; the import
/// still succeeds (the worker decrypts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_encrypted_at_rest() {
    let image = TestImage::single(502, Format::Docker, &[400_000]);
    let src = TestRegistry::htpasswd("enc", "At-Rest-Secret-9").await;
    src.client()
        .push_image("private/app", "v1", &image)
        .await
        .expect("push");
    let slow = ThrottleProxy::start(&src.host(), Some(40_000)).await;
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("creds.key");
    std::fs::write(&key, "ab".repeat(32)).expect("key");
    let env = TestEnv::start_with(|c| c.flag("--credentials-key-file", key.display())).await;
    env.create_registry(REG).await;
    let b = json!({"source": {"registryUri": slow.host(), "sourceImage": "private/app:v1",
                              "credentials": {"username": "enc", "password": "At-Rest-Secret-9"}},
                   "targetTags": ["enc:1"]});
    let accepted = env.start_import(REG, &b).await;
    let pool = sqlx::PgPool::connect(env.db.url()).await.expect("db");
    let (state, stored): (String, Option<String>) =
        sqlx::query_as("select state, credentials::text from operations")
            .fetch_one(&pool)
            .await
            .expect("row");
    assert!(
        matches!(state.as_str(), "Queued" | "Running"),
        "the import should still run: {state}"
    );
    let stored = stored.expect("credentials stored while running");
    assert!(
        !stored.contains("At-Rest-Secret-9"),
        "plain password in the row"
    );
    assert!(
        !stored.contains("\"enc\""),
        "plain username in the row: {stored}"
    );
    assert!(stored.contains("A256GCM"), "{stored}");
    slow.set_rate(None);
    let status = env
        .arm
        .poll_until_done(&accepted.async_operation(), Duration::from_secs(60))
        .await;
    assert_eq!(status["status"], "Succeeded", "{status}");
    let (left,): (Option<String>,) = sqlx::query_as("select credentials::text from operations")
        .fetch_one(&pool)
        .await
        .expect("row");
    assert!(left.is_none());
}

/// A registryUri that is a metadata / link-local IP literal is refused before anything is
/// queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_address_source_refused_at_post() {
    let env = TestEnv::start().await;
    env.create_registry(REG).await;
    for host in ["169.254.169.254", "169.254.1.1:443", "0.0.0.0:5000"] {
        let r = env
            .arm
            .import(
                &env.sub,
                &env.rg,
                REG,
                &uri_import(host, "latest/meta:v1", &["x:1"]),
            )
            .await;
        assert_eq!(r.status.as_u16(), 400, "{host}: {r}");
        assert_eq!(r.assert_arm_error(), "InvalidParameter", "{host}");
        let m = r.error_message().unwrap_or_default();
        let bare = host.split(':').next().unwrap_or(host);
        assert!(m.contains(bare) && m.contains("refused"), "{host}: {m}");
    }
}

/// A registry whose token realm points at the metadata address: the operation fails naming
/// the realm, and nothing is fetched from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_realm_at_metadata_address_fails() {
    let (host, _task) = hostile_source(|| {
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                r#"Bearer realm="http://169.254.169.254/latest/meta-data/iam",service="evil",scope="repository:demo/app:pull""#,
            )],
            "{}",
        )
            .into_response()
    })
    .await;
    let env = TestEnv::start().await;
    env.create_registry(REG).await;
    let (_, status) = env
        .import_and_wait(REG, &uri_import(&host, "demo/app:v1", &["x:1"]))
        .await;
    let m = assert_failed(&status, "SourceRegistryError");
    assert!(
        m.contains("token realm") && m.contains("169.254.169.254"),
        "{m}"
    );
}

/// A source that redirects to a link-local address: the redirect is not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_link_local_fails() {
    let (host, _task) = hostile_source(|| {
        (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, "http://169.254.169.254/latest/meta-data/")],
        )
            .into_response()
    })
    .await;
    let env = TestEnv::start().await;
    env.create_registry(REG).await;
    let (_, status) = env
        .import_and_wait(REG, &uri_import(&host, "demo/app:v1", &["x:1"]))
        .await;
    let m = assert_failed(&status, "SourceRegistryError");
    assert!(
        m.contains("169.254.169.254") && m.contains("link-local"),
        "{m}"
    );
}

/// --deny-private-networks: a 127.0.0.1 source is refused at POST, and `localhost` (a name)
/// fails when it resolves; the backend on loopback still works (it is exempt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_private_networks_refuses_loopback_sources() {
    let image = TestImage::single(503, Format::Oci, &[1000]);
    let src = crate::common::anonymous_source("demo/app", "v1", &image).await;
    let env = TestEnv::start_with(|c| c.arg("--deny-private-networks")).await;
    env.create_registry(REG).await;
    let r = env
        .arm
        .import(
            &env.sub,
            &env.rg,
            REG,
            &uri_import(&src.host(), "demo/app:v1", &["x:1"]),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400, "{r}");
    let m = r.error_message().unwrap_or_default();
    assert!(
        m.contains("127.0.0.1") && m.contains("--deny-private-networks"),
        "{m}"
    );

    let by_name = format!("localhost:{}", src.port());
    let (_, status) = env
        .import_and_wait(REG, &uri_import(&by_name, "demo/app:v1", &["x:1"]))
        .await;
    let m = assert_failed(&status, "SourceRegistryError");
    assert!(
        m.contains("resolves to") && m.contains("--deny-private-networks"),
        "{m}"
    );

    // An emulated source (on the exempt backend) still imports.
    env.arm.create_registry(&env.sub, &env.rg, "OtherReg").await;
    let body = json!({"source": {"resourceId": env.registry_id(REG), "sourceImage": "nothing:here"},
                      "targetTags": ["y:1"]});
    let (_, status) = env.import_and_wait("OtherReg", &body).await;
    assert_failed(&status, "SourceImageNotFound");
}

/// Limits: --max-operations-per-subscription and --max-queued-operations answer 429 with
/// Retry-After and an ARM error naming the limit; once operations end, POSTs are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_limits_answer_429() {
    let (host, release, _task) = held_source().await;
    let env = TestEnv::start_with(|c| {
        c.flag("--max-operations-per-subscription", 2)
            .flag("--max-queued-operations", 3)
    })
    .await;
    env.create_registry(REG).await;
    let other_sub = uuid::Uuid::new_v4().to_string();
    env.arm
        .create_registry(&other_sub, &env.rg, "OtherSubReg")
        .await;
    // Distinct target tags: concurrent NoForce imports of one tag would end at once with a
    // Conflict (one winner), and ended operations do not count against the limits.
    let body_for = |i: usize| uri_import(&host, "demo/app:v1", &[&format!("x:{i}")]);
    let body = body_for(0);
    let mut accepted = Vec::new();
    for i in 1..=2 {
        accepted.push(env.start_import(REG, &body_for(i)).await);
    }
    let limited = env.arm.import(&env.sub, &env.rg, REG, &body).await;
    assert_eq!(limited.status.as_u16(), 429, "{limited}");
    assert_eq!(limited.assert_arm_error(), "TooManyRequests");
    assert!(limited.retry_after().is_some_and(|s| s > 0), "{limited}");
    let m = limited.error_message().unwrap_or_default();
    assert!(m.contains("--max-operations-per-subscription"), "{m}");

    // The other subscription may add one more (3 in the queue), then the global bound answers.
    let r = env
        .arm
        .import(&other_sub, &env.rg, "OtherSubReg", &body_for(3))
        .await;
    assert_eq!(r.status.as_u16(), 202, "{r}");
    accepted.push(r);
    let limited = env
        .arm
        .import(&other_sub, &env.rg, "OtherSubReg", &body)
        .await;
    assert_eq!(limited.status.as_u16(), 429, "{limited}");
    assert_eq!(limited.assert_arm_error(), "TooManyRequests");
    assert!(limited.retry_after().is_some(), "{limited}");
    let m = limited.error_message().unwrap_or_default();
    assert!(m.contains("--max-queued-operations"), "{m}");

    // Let them end; the next POST is accepted again.
    release.send(true).expect("release");
    for a in &accepted {
        let status = env
            .arm
            .poll_until_done(&a.async_operation(), Duration::from_secs(60))
            .await;
        assert_eq!(status["status"], "Failed", "{status}");
    }
    let again = env.arm.import(&env.sub, &env.rg, REG, &body).await;
    assert_eq!(again.status.as_u16(), 202, "{again}");
}

/// A docker-registry serving HTTPS with a certificate from a fresh CA, over the storage of
/// `src` (so it serves the same images). Returns (child, port, CA PEM path); the child is
/// killed by the caller.
async fn tls_registry(
    src: &TestRegistry,
    dir: &std::path::Path,
) -> (std::process::Child, u16, std::path::PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "acr-import security test CA");
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("leaf params");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf cert");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).expect("ca.pem");
    std::fs::write(dir.join("cert.pem"), leaf_cert.pem()).expect("cert");
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).expect("key");
    let port = acr_import_tests::util::free_port();
    let config = format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: tls-test-secret\n  tls:\n    certificate: {}\n    key: {}\n",
        src.dir().join("storage").display(),
        dir.join("cert.pem").display(),
        dir.join("key.pem").display(),
    );
    std::fs::write(dir.join("config.yml"), config).expect("config");
    let log = std::fs::File::create(dir.join("registry.log")).expect("log");
    let child = std::process::Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn docker-registry");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the TLS registry did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, port, ca_path)
}

/// TLS to sources verifies certificates: an untrusted (self-signed CA) HTTPS source fails with
/// a certificate error; trusting its CA with --source-ca-file makes the import succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sources_are_verified() {
    let image = TestImage::single(504, Format::Oci, &[1500]);
    let src = crate::common::anonymous_source("demo/app", "v1", &image).await;
    let dir = tempfile::tempdir().expect("dir");
    let (mut child, port, ca) = tls_registry(&src, dir.path()).await;
    let uri = format!("https://127.0.0.1:{port}");

    let env = TestEnv::start().await;
    env.create_registry(REG).await;
    let (_, status) = env
        .import_and_wait(REG, &uri_import(&uri, "demo/app:v1", &["x:1"]))
        .await;
    let m = assert_failed(&status, "SourceRegistryError");
    assert!(m.to_ascii_lowercase().contains("certificate"), "{m}");
    drop(env);

    let env = TestEnv::start_with(|c| c.flag("--source-ca-file", ca.display())).await;
    env.create_registry(REG).await;
    let status = env
        .import_ok(REG, &uri_import(&uri, "demo/app:v1", &["x:1"]))
        .await;
    assert_eq!(status["status"], "Succeeded");
    let _ = child.kill();
    let _ = child.wait();
}

/// A process without the key cannot use encrypted credentials: the operation fails with a
/// message naming the flag instead of running with garbage (the accepting process was killed
/// mid-import; the other one takes the operation over when the lease expires).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_credentials_without_the_key_fail_clearly() {
    let (host, _release, _task) = held_source().await;
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("creds.key");
    std::fs::write(&key, [9u8; 32]).expect("key");
    // Two processes share the content: an external backend.
    let mut env = TestEnv::start_with_backend(TestRegistry::anonymous().await, |c| {
        c.flag("--credentials-key-file", key.display())
            .lease_seconds(3)
    })
    .await;
    env.create_registry(REG).await;
    let b = json!({"source": {"registryUri": host, "sourceImage": "demo/app:v1",
                              "credentials": {"username": "u", "password": "Held-Secret-77"}},
                   "targetTags": ["k:1"]});
    let accepted = env.start_import(REG, &b).await;
    // Wait until the keyed process runs it, then kill it.
    let pool = sqlx::PgPool::connect(env.db.url()).await.expect("db");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (state,): (String,) = sqlx::query_as("select state from operations")
            .fetch_one(&pool)
            .await
            .expect("row");
        if state == "Running" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never claimed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.service.kill_9();
    let keyless = acr_import_tests::TestService::start(
        acr_import_tests::ServiceConfig::new(env.db.url(), &env.external_backend().url())
            .lease_seconds(3),
    )
    .await;
    let arm = acr_import_tests::ArmClient::new(&keyless.base_url());
    let status = arm
        .poll_until_done(
            &arm.rebase(&accepted.async_operation()),
            Duration::from_secs(60),
        )
        .await;
    let m = assert_failed(&status, "InternalServerError");
    assert!(
        m.contains("--credentials-key-file") && m.contains("encrypted"),
        "{m}"
    );
    let (left,): (Option<String>,) = sqlx::query_as("select credentials::text from operations")
        .fetch_one(&pool)
        .await
        .expect("row");
    assert!(left.is_none(), "credentials left after the failure");
}
