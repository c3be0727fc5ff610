//! Garbage collection of the built-in registry, offline and online.
//!
//! `acr-import gc [--dry-run]` on a stopped data directory: refused while the service runs,
//! a dry run lists exactly the unreferenced content and deletes nothing, the real run frees
//! it, and every image still referenced pulls back whole afterwards.
//!
//! Online (`--gc-interval-seconds 1 --gc-grace-seconds 0`): collections race real ARM imports,
//! real pushes (skopeo) and registry deletions of images that share layers, round after round;
//! every image pulls back whole, and what only deleted registries referenced is freed.

use std::collections::BTreeSet;
use std::time::Duration;

use acr_import_tests::env::IMPORT_TIMEOUT;
use acr_import_tests::image::Format;
use acr_import_tests::service::service_bin;
use acr_import_tests::{
    ArmClient, Blob, Manifest, OciClient, Platform, ServiceConfig, TestImage, TestRegistry,
    TestService,
};

use crate::common::{assert_succeeded, run, uri_import};

const RG: &str = "acr-tests-rg";

fn gc(data_dir: &std::path::Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(service_bin());
    cmd.arg("gc").arg("--data-dir").arg(data_dir).args(extra);
    cmd
}

/// Blob files of the built-in registry.
fn stored(data_dir: &std::path::Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let root = data_dir.join("registry/blobs/sha256");
    for prefix in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(prefix.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.insert(format!("sha256:{}", f.file_name().to_string_lossy()));
        }
    }
    out
}

/// An image whose first layer is `other`'s (same bytes, same digest), plus a layer and a
/// config of its own.
fn sharing_first_layer(other: &TestImage, seed: u64) -> TestImage {
    let f = Format::Oci;
    let shared = other.blobs[1].clone();
    let own = Blob::generated(f.layer_type(), seed, 60_000);
    let config = Blob::inline(
        f.config_type(),
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [shared.digest, own.digest]},
        }))
        .expect("config"),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": f.manifest_type(),
        "config": config.descriptor_json(),
        "layers": [shared.descriptor_json(), own.descriptor_json()],
    });
    TestImage {
        top: Manifest::from_json(f.manifest_type(), &manifest, Some(Platform::amd64())),
        children: Vec::new(),
        blobs: vec![config, shared, own],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_on_a_stopped_data_directory_frees_exactly_the_unreferenced_content() {
    // Two images sharing a layer, in two registries; the first registry is then deleted.
    let shared = 1 << 20;
    let gone = TestImage::single(8101, Format::Oci, &[shared, 40_000, 50_000]);
    let kept = sharing_first_layer(&gone, 8102);
    assert_eq!(kept.blobs[1].digest, gone.blobs[1].digest);
    let src = TestRegistry::anonymous().await;
    src.client()
        .push_image("demo/gone", "v1", &gone)
        .await
        .expect("push");
    src.client()
        .push_image("demo/kept", "v1", &kept)
        .await
        .expect("push");

    let data = tempfile::Builder::new()
        .prefix("acr-gc-")
        .tempdir()
        .expect("temp dir");
    let data_dir = data.path().join("data");
    let config = ServiceConfig::sqlite(&data_dir, "unused")
        .builtin_registry(false)
        .flag("--gc-interval-seconds", 0);
    let mut svc = TestService::start(config.clone()).await;
    let sub = uuid::Uuid::new_v4().to_string();
    let arm = ArmClient::new(&svc.base_url());
    for (reg, image) in [("GoneReg", "demo/gone:v1"), ("KeptReg", "demo/kept:v1")] {
        arm.create_registry(&sub, RG, reg).await;
        let accepted = arm
            .import(&sub, RG, reg, &uri_import(&src.host(), image, &["app:v1"]))
            .await;
        assert_eq!(accepted.status.as_u16(), 202, "{accepted}");
        let status = arm
            .poll_until_done(&accepted.async_operation(), IMPORT_TIMEOUT)
            .await;
        assert_succeeded(&status);
    }
    let before = stored(&data_dir);
    let gone_content: BTreeSet<String> = gone
        .blobs
        .iter()
        .map(|b| b.digest.clone())
        .chain([gone.top.digest.clone()])
        .collect();
    let kept_content: BTreeSet<String> = kept
        .blobs
        .iter()
        .map(|b| b.digest.clone())
        .chain([kept.top.digest.clone()])
        .collect();
    assert!(gone_content.is_subset(&before) && kept_content.is_subset(&before));
    // The data plane reports each repository's disk usage: its distinct content.
    for (reg, image) in [("gonereg", &gone), ("keptreg", &kept)] {
        let r = reqwest::Client::new()
            .get(format!("{}/acr/v1/app", svc.registry_url()))
            .header("Host", format!("{reg}.azurecr.io"))
            .send()
            .await
            .expect("GET /acr/v1/app");
        assert_eq!(r.status().as_u16(), 200);
        let v: serde_json::Value = r.json().await.expect("JSON");
        let expected =
            image.blobs.iter().map(|b| b.size).sum::<u64>() + image.top.bytes.len() as u64;
        assert_eq!(v["diskUsageBytes"], expected, "{reg}: {v}");
    }
    // /metrics reports the built-in registry's disk usage (measured every 10 s).
    let on_disk: u64 = std::fs::read_dir(data_dir.join("registry/blobs/sha256"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|p| std::fs::read_dir(p.path()).into_iter().flatten().flatten())
        .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    let metrics_url = format!("{}/metrics", svc.base_url());
    acr_import_tests::util::poll_until(
        "/metrics to report the content on disk",
        Duration::from_secs(25),
        Duration::from_millis(500),
        || async {
            let text = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
            let want_bytes =
                format!("acr_import_builtin_registry_disk_bytes{{kind=\"content\"}} {on_disk}");
            let want_files = format!("acr_import_builtin_registry_content_files {}", before.len());
            (text.lines().any(|l| l == want_bytes) && text.lines().any(|l| l == want_files))
                .then_some(())
        },
    )
    .await;
    arm.delete_registry_and_wait(&sub, RG, "GoneReg").await;
    let unreferenced: BTreeSet<String> = gone_content.difference(&kept_content).cloned().collect();

    // Refused while the service has the directory.
    let (ok, out) = run(gc(&data_dir, &["--dry-run"])).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "another process (pid {}) is using the registry data directory",
            svc.pid()
        )),
        "{out}"
    );

    let status = svc.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");

    // A dry run lists exactly the unreferenced content and deletes nothing.
    let (ok, out) = run(gc(&data_dir, &["--dry-run"])).await;
    assert!(ok, "{out}");
    let listed: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("would free "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    assert_eq!(listed, unreferenced, "{out}");
    assert!(out.contains("dry run: nothing deleted"), "{out}");
    assert_eq!(stored(&data_dir), before);

    // The real run frees it.
    let (ok, out) = run(gc(&data_dir, &[])).await;
    assert!(ok, "{out}");
    let freed: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("freed "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    assert_eq!(freed, unreferenced, "{out}");
    let after = stored(&data_dir);
    assert!(after.is_disjoint(&unreferenced));
    assert_eq!(
        before.difference(&after).cloned().collect::<BTreeSet<_>>(),
        unreferenced
    );
    // Nothing left to free.
    let (ok, out) = run(gc(&data_dir, &[])).await;
    assert!(ok && !out.contains("freed sha256"), "{out}");

    // The kept image pulls back whole from the restarted service.
    let svc = TestService::start(config).await;
    OciClient::new(&svc.registry_url(), None)
        .assert_has_image("keptreg/app", Some("v1"), &kept)
        .await;
}

/// `skopeo copy --all` from `src` to `dest` (both plain HTTP, loopback).
async fn skopeo_copy(src: String, dest: String) {
    let mut cmd = std::process::Command::new("skopeo");
    cmd.env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .args([
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(&src)
        .arg(&dest);
    let (ok, out) = run(cmd).await;
    assert!(
        ok,
        "skopeo copy {src} {dest} failed (scripts/test.sh installs skopeo):\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_gc_racing_imports_pushes_and_deletions_loses_nothing() {
    const ROUNDS: usize = 4;
    // Images sharing a 1 MiB layer, and a 3-platform index; each round also imports an image
    // of its own (sharing that layer too) that only its registry references.
    let base = TestImage::single(8201, Format::Oci, &[1 << 20, 30_000]);
    let mut images = vec![base.clone()];
    images.extend((8202..8207).map(|seed| sharing_first_layer(&base, seed)));
    images.push(TestImage::three_platform(8210));
    let own: Vec<TestImage> = (0..ROUNDS as u64)
        .map(|r| sharing_first_layer(&base, 8300 + r))
        .collect();
    let src = TestRegistry::anonymous().await;
    let c = src.client();
    for (i, image) in images.iter().enumerate() {
        c.push_image(&format!("demo/img{i}"), "v1", image)
            .await
            .expect("push");
    }
    for (r, image) in own.iter().enumerate() {
        c.push_image(&format!("demo/own{r}"), "v1", image)
            .await
            .expect("push");
    }

    let data = tempfile::Builder::new()
        .prefix("acr-gc-race-")
        .tempdir()
        .expect("temp dir");
    let data_dir = data.path().join("data");
    let config = ServiceConfig::sqlite(&data_dir, "unused")
        .builtin_registry(false)
        .flag("--gc-interval-seconds", 1)
        .flag("--gc-grace-seconds", 0);
    let svc = TestService::start(config).await;
    let sub = uuid::Uuid::new_v4().to_string();
    let arm = ArmClient::new(&svc.base_url());
    let builtin = OciClient::new(&svc.registry_url(), None);
    let registry_host = svc.registry_url().trim_start_matches("http://").to_string();

    let mut previous: Option<String> = None;
    for (round, own_image) in own.iter().enumerate() {
        let reg = format!("GcRace{round}");
        let lower = reg.to_ascii_lowercase();
        arm.create_registry(&sub, RG, &reg).await;
        // Every image and this round's own, POSTed one after another and awaited together.
        let imports = async {
            let mut sources: Vec<String> =
                (0..images.len()).map(|i| format!("demo/img{i}")).collect();
            sources.push(format!("demo/own{round}"));
            let mut waiting = Vec::new();
            for s in &sources {
                let tag = format!("imp/{}:v1", s.trim_start_matches("demo/"));
                let accepted = arm
                    .import(
                        &sub,
                        RG,
                        &reg,
                        &uri_import(&src.host(), &format!("{s}:v1"), &[&tag]),
                    )
                    .await;
                match accepted.status.as_u16() {
                    202 => waiting.push(accepted.async_operation()),
                    200 => {}
                    _ => panic!("import of {s} not accepted: {accepted}"),
                }
            }
            for url in waiting {
                assert_succeeded(&arm.poll_until_done(&url, IMPORT_TIMEOUT).await);
            }
        };
        // Half of the images pushed by skopeo into the same registry (other repositories).
        let pushes = async {
            for i in (0..images.len()).filter(|i| (i + round) % 2 == 0) {
                skopeo_copy(
                    format!("docker://{}/demo/img{i}:v1", src.host()),
                    format!("docker://{registry_host}/{lower}/push/img{i}:v1"),
                )
                .await;
            }
        };
        // The previous round's registry deleted meanwhile: its content, shared with what this
        // round writes, loses its references while the collections run.
        let deletion = async {
            if let Some(prev) = &previous {
                arm.delete_registry_and_wait(&sub, RG, prev).await;
            }
        };
        tokio::join!(imports, pushes, deletion);

        for (i, image) in images.iter().enumerate() {
            builtin
                .assert_has_image(&format!("{lower}/imp/img{i}"), Some("v1"), image)
                .await;
            if (i + round) % 2 == 0 {
                builtin
                    .assert_has_image(&format!("{lower}/push/img{i}"), Some("v1"), image)
                    .await;
            }
        }
        builtin
            .assert_has_image(&format!("{lower}/imp/own{round}"), Some("v1"), own_image)
            .await;
        previous = Some(reg);
    }

    // What the last registry references is exactly what stays once the collections catch up:
    // the earlier rounds' own images are freed, nothing else.
    let content = |image: &TestImage| -> BTreeSet<String> {
        image
            .blob_digests()
            .into_iter()
            .chain(image.manifest_digests())
            .collect()
    };
    let mut expected: BTreeSet<String> = images.iter().flat_map(content).collect();
    expected.extend(content(&own[ROUNDS - 1]));
    let freed: BTreeSet<String> = own[..ROUNDS - 1]
        .iter()
        .flat_map(content)
        .filter(|d| !expected.contains(d))
        .collect();
    assert!(!freed.is_empty());
    acr_import_tests::util::poll_until(
        "the online collections to free the deleted registries' own content",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async { (stored(&data_dir) == expected).then_some(()) },
    )
    .await;
    let log = svc.log();
    assert!(
        log.contains("garbage collection freed unreferenced content"),
        "{log}"
    );
    // And after more collections, every image of the last round still pulls whole.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let lower = format!("gcrace{}", ROUNDS - 1);
    for (i, image) in images.iter().enumerate() {
        builtin
            .assert_has_image(&format!("{lower}/imp/img{i}"), Some("v1"), image)
            .await;
    }
    assert_eq!(stored(&data_dir), expected);
}
