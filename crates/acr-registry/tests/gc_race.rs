//! Garbage collection racing pushes, in-process blob writes (the importer's path) and mounts of
//! images that share layers, with repositories deleted as it goes: collections run back to back
//! with no grace period the whole time. Afterwards every image still tagged is whole (every
//! blob served, with the right bytes), and one more collection leaves exactly the content the
//! remaining images reference. Repeated over several rounds with different interleavings.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use acr_grammar::Digest;
use acr_registry::{GcOptions, Registry};
use bytes::Bytes;
use common::serve_at;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};

const WRITERS: usize = 4;
const IMAGES_PER_WRITER: usize = 12;
const SHARED_LAYERS: u64 = 6;

fn digest_of(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Deterministic bytes of a layer.
fn layer(seed: u64) -> Vec<u8> {
    let size = 1000 + (seed * 7919 % 30_000) as usize;
    (0..size)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 17) % 251) as u8)
        .collect()
}

#[derive(Debug, Clone)]
struct Image {
    repo: String,
    manifest: Vec<u8>,
    blobs: Vec<Vec<u8>>,
}

impl Image {
    fn content(&self) -> BTreeSet<String> {
        self.blobs
            .iter()
            .map(|b| digest_of(b))
            .chain([digest_of(&self.manifest)])
            .collect()
    }
}

fn image(repo: String, seed: u64) -> Image {
    let shared_a = layer(seed % SHARED_LAYERS);
    let shared_b = layer((seed / 3) % SHARED_LAYERS);
    let own = layer(1000 + seed);
    let layers = vec![shared_a, shared_b, own];
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "seed": seed,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| digest_of(l)).collect::<Vec<_>>()},
    }))
    .expect("config");
    let desc = |media: &str, b: &[u8]| serde_json::json!({"mediaType": media, "digest": digest_of(b), "size": b.len()});
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", &config),
        "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
    }))
    .expect("manifest");
    let mut blobs = vec![config];
    blobs.extend(layers);
    Image {
        repo,
        manifest,
        blobs,
    }
}

/// Pushes `img`, each blob by one of three paths chosen by `seed`: the in-process write, a
/// single-POST upload, or a mount from `mount_from` (falling back to an upload when the
/// registry says it cannot mount).
async fn push(
    registry: &Registry,
    http: &reqwest::Client,
    base: &str,
    img: &Image,
    seed: u64,
    mount_from: Option<&str>,
) {
    for (i, b) in img.blobs.iter().enumerate() {
        let d = digest_of(b);
        match (seed + i as u64) % 3 {
            0 => {
                let body = futures::stream::iter(vec![Ok(Bytes::copy_from_slice(b))]).boxed();
                let digest = Digest::parse(&d).expect("digest");
                registry
                    .put_blob(&img.repo, &digest, b.len() as u64, body)
                    .await
                    .expect("put_blob");
            }
            1 if mount_from.is_some() => {
                let from = mount_from.unwrap_or_default();
                let r = http
                    .post(format!(
                        "{base}/v2/{}/blobs/uploads/?mount={d}&from={from}",
                        img.repo
                    ))
                    .send()
                    .await
                    .expect("mount");
                if r.status() != 201 {
                    assert_eq!(r.status(), 202, "mount fallback");
                    upload(http, base, &img.repo, &d, b).await;
                }
            }
            _ => upload(http, base, &img.repo, &d, b).await,
        }
    }
    let r = http
        .put(format!("{base}/v2/{}/manifests/latest", img.repo))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(img.manifest.clone())
        .send()
        .await
        .expect("PUT manifest");
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
}

async fn upload(http: &reqwest::Client, base: &str, repo: &str, d: &str, b: &[u8]) {
    let r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .header("content-type", "application/octet-stream")
        .body(b.to_vec())
        .send()
        .await
        .expect("single POST");
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
}

/// Every blob file in the registry.
fn stored(root: &std::path::Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in std::fs::read_dir(root.join("blobs/sha256"))
        .into_iter()
        .flatten()
        .flatten()
    {
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

async fn round(round: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data");
    let server = serve_at(dir.path(), None).await;
    let (registry, base) = (server.registry.clone(), server.base.clone());
    let http = reqwest::Client::new();

    // Collections back to back, no grace, for as long as the writers write.
    let done = Arc::new(AtomicBool::new(false));
    let collector = {
        let (registry, done) = (registry.clone(), done.clone());
        tokio::spawn(async move {
            let mut runs = 0u32;
            let mut freed = 0u64;
            while !done.load(Ordering::Relaxed) {
                let r = registry
                    .collect_garbage(GcOptions {
                        grace: Duration::ZERO,
                        dry_run: false,
                    })
                    .await
                    .expect("collect");
                runs += 1;
                freed += r.freed_blobs;
                tokio::task::yield_now().await;
            }
            (runs, freed)
        })
    };

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (registry, http, base) = (registry.clone(), http.clone(), base.clone());
        writers.push(tokio::spawn(async move {
            let mut live: Vec<Image> = Vec::new();
            let mut dead: Vec<Image> = Vec::new();
            for n in 0..IMAGES_PER_WRITER {
                let seed = round * 1000 + (w * IMAGES_PER_WRITER + n) as u64;
                let img = image(format!("w{w}/img{n}"), seed);
                let from = live.last().map(|i| i.repo.clone());
                push(&registry, &http, &base, &img, seed, from.as_deref()).await;
                live.push(img);
                // Every third image, a repository goes (the oldest still there).
                if n % 3 == 2 {
                    let gone = live.remove(0);
                    let r = http
                        .delete(format!("{base}/acr/v1/{}", gone.repo))
                        .send()
                        .await
                        .expect("DELETE repository");
                    assert_eq!(r.status(), 202);
                    dead.push(gone);
                }
            }
            (live, dead)
        }));
    }
    let mut live = Vec::new();
    let mut dead = Vec::new();
    for w in writers {
        let (l, d) = w.await.expect("writer");
        live.extend(l);
        dead.extend(d);
    }
    done.store(true, Ordering::Relaxed);
    let (runs, freed_during) = collector.await.expect("collector");
    assert!(
        runs >= 2,
        "round {round}: only {runs} collections ran during the writes"
    );

    // Every remaining image is whole: manifest by tag, every blob with its bytes.
    for img in &live {
        let r = http
            .get(format!("{base}/v2/{}/manifests/latest", img.repo))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .expect("GET manifest");
        assert_eq!(r.status(), 200, "round {round}: {}", img.repo);
        assert_eq!(r.bytes().await.expect("body").as_ref(), &img.manifest[..]);
        for b in &img.blobs {
            let d = digest_of(b);
            let r = http
                .get(format!("{base}/v2/{}/blobs/{d}", img.repo))
                .send()
                .await
                .expect("GET blob");
            assert_eq!(r.status(), 200, "round {round}: {} lost {d}", img.repo);
            assert_eq!(r.bytes().await.expect("body").as_ref(), &b[..], "{d}");
        }
    }

    // With the writers done, one more collection leaves exactly what the live images use.
    let report = registry
        .collect_garbage(GcOptions {
            grace: Duration::ZERO,
            dry_run: false,
        })
        .await
        .expect("final collect");
    let referenced: BTreeSet<String> = live.iter().flat_map(Image::content).collect();
    let after = stored(&root);
    assert_eq!(
        after, referenced,
        "round {round}: stored content differs from the referenced"
    );
    let dead_only: BTreeSet<String> = dead
        .iter()
        .flat_map(Image::content)
        .filter(|d| !referenced.contains(d))
        .collect();
    assert!(
        !dead_only.is_empty(),
        "the deleted repositories had content of their own"
    );
    assert!(after.is_disjoint(&dead_only));
    eprintln!(
        "gc race round {round}: {runs} collections during the writes freed {freed_during}, the final one {}; {} live images, {} deleted",
        report.freed_blobs,
        live.len(),
        dead.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collections_racing_pushes_mounts_and_deletes_lose_nothing_reachable_and_free_the_rest() {
    for r in 1..=4 {
        round(r).await;
    }
}
