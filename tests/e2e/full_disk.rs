//! The built-in registry on a full file system: a small tmpfs mounted as the registry's data
//! directory (the tests run as root). An import whose big layer fills it half-way fails with a
//! message saying the registry is out of space and leaves nothing behind; pushes get a 507 in
//! the distribution error shape and their upload files are removed; a manifest write on a disk
//! with no page left stores no tag; once the tmpfs grows, the same import succeeds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use acr_import_tests::env::IMPORT_TIMEOUT;
use acr_import_tests::image::Format;
use acr_import_tests::{ArmClient, OciClient, ServiceConfig, TestImage, TestService};

use crate::common::{anonymous_source, assert_succeeded, target, uri_import, REG};

const RG: &str = "acr-tests-rg";

/// A tmpfs of a given size mounted on a directory; unmounted (lazily) on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (the test suite runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn resize(&self, mib: u64) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Bytes in use on the file system.
    fn used(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(&self.dir)
            .output()
            .expect("run df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output")
    }

    /// Writes a file until the file system refuses (ENOSPC).
    fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0xa5u8; 64 << 10];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        let _ = f.flush();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Regular files under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Asserts a registry answer is a 507 in the distribution error shape, saying the registry is
/// out of space.
async fn assert_out_of_space(what: &str, resp: reqwest::Response) {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 507, "{what}: {body}");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: not JSON: {body}"));
    assert_eq!(v["errors"][0]["code"], "UNKNOWN", "{what}: {body}");
    let message = v["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("the registry is out of disk space"),
        "{what}: {body}"
    );
    assert!(
        !body.contains("panicked") && !body.contains("os error"),
        "{what}: internals in the answer: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_imports_and_pushes_cleanly_and_the_import_succeeds_once_space_is_freed()
{
    let data = tempfile::Builder::new()
        .prefix("acr-full-")
        .tempdir()
        .expect("temp dir");
    let data_dir = data.path().join("data");
    let registry_dir = data_dir.join("registry");
    let tmpfs = Tmpfs::mount(&registry_dir, 16);

    // One 24 MiB layer: the disk fills in the middle of it.
    let image = TestImage::single(7301, Format::Oci, &[24 << 20, 3000]);
    let (src, svc) = tokio::join!(
        anonymous_source("demo/big", "v1", &image),
        TestService::start(ServiceConfig::sqlite(&data_dir, "unused").builtin_registry(false)),
    );
    let sub = uuid::Uuid::new_v4().to_string();
    let arm = ArmClient::new(&svc.base_url());
    arm.create_registry(&sub, RG, REG).await;
    let body = uri_import(&src.host(), "demo/big:v1", &["big:v1"]);

    let accepted = arm.import(&sub, RG, REG, &body).await;
    assert_eq!(accepted.status.as_u16(), 202, "{accepted}");
    let status = arm
        .poll_until_done(&accepted.async_operation(), IMPORT_TIMEOUT)
        .await;
    assert_eq!(status["status"], "Failed", "{status}");
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the registry is out of disk space"),
        "the import says why: {status}"
    );
    // Nothing half-written: no upload or temp file, no big blob, no tag; the space is back.
    assert_eq!(
        files_under(&registry_dir.join("uploads")),
        Vec::<PathBuf>::new()
    );
    assert_eq!(
        files_under(&registry_dir.join("tmp")),
        Vec::<PathBuf>::new()
    );
    let big = image
        .blobs
        .iter()
        .find(|b| b.size == 24 << 20)
        .expect("the big layer");
    let builtin = OciClient::new(&svc.registry_url(), None);
    let repo = target("big");
    assert!(!builtin
        .blob_exists(&repo, &big.digest)
        .await
        .expect("HEAD blob"));
    assert!(!builtin
        .manifest_exists(&repo, "v1")
        .await
        .expect("HEAD manifest"));
    assert!(
        tmpfs.used() < 1 << 20,
        "the failed layer's bytes were freed: {} bytes in use",
        tmpfs.used()
    );

    // A client's chunked push: 507, the session is over and its file gone.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let base = svc.registry_url();
    let start = http
        .post(format!("{base}/v2/{}/blobs/uploads/", target("pushed")))
        .send()
        .await
        .expect("start upload");
    assert_eq!(start.status().as_u16(), 202);
    let location = start
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_string();
    let session = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    // The server answers 507 before reading the whole body and then closes the connection
    // (it cannot find the next request in it); without `connection: close` the client may send
    // the next request on that connection before it sees it close (IncompleteMessage).
    let patch = http
        .patch(&session)
        .header("content-type", "application/octet-stream")
        .header("connection", "close")
        .body(vec![7u8; 20 << 20])
        .send()
        .await
        .expect("PATCH");
    assert_out_of_space("PATCH of 20 MiB", patch).await;
    let after = http.get(&session).send().await.expect("GET session");
    assert_eq!(after.status().as_u16(), 404, "the session ended");
    assert_eq!(
        files_under(&registry_dir.join("uploads")),
        Vec::<PathBuf>::new()
    );

    // A single-POST push: the same.
    let blob = vec![9u8; 20 << 20];
    let digest = format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &blob))
    );
    let post = http
        .post(format!(
            "{base}/v2/{}/blobs/uploads/?digest={digest}",
            target("pushed")
        ))
        .header("content-type", "application/octet-stream")
        .header("connection", "close")
        .body(blob)
        .send()
        .await
        .expect("single POST");
    assert_out_of_space("single POST of 20 MiB", post).await;
    assert_eq!(
        files_under(&registry_dir.join("uploads")),
        Vec::<PathBuf>::new()
    );

    // No page left at all: a manifest (whose blobs are there) stores no tag.
    let small = TestImage::single(7302, Format::Oci, &[100]);
    for b in &small.blobs {
        builtin
            .push_blob(&target("small"), b)
            .await
            .expect("push small blob");
    }
    let filler = tmpfs.fill();
    let put = http
        .put(format!("{base}/v2/{}/manifests/v1", target("small")))
        .header("content-type", small.top.media_type.as_str())
        .body(small.top.bytes.clone())
        .send()
        .await
        .expect("PUT manifest");
    assert_out_of_space("PUT manifest", put).await;
    assert!(!builtin
        .manifest_exists(&target("small"), "v1")
        .await
        .expect("HEAD"));
    assert_eq!(
        files_under(&registry_dir.join("tmp")),
        Vec::<PathBuf>::new()
    );
    std::fs::remove_file(filler).expect("free the filler");

    // Space freed (the tmpfs grows): the same import succeeds.
    tmpfs.resize(96);
    let accepted = arm.import(&sub, RG, REG, &body).await;
    assert_eq!(accepted.status.as_u16(), 202, "{accepted}");
    let status = arm
        .poll_until_done(&accepted.async_operation(), IMPORT_TIMEOUT)
        .await;
    assert_succeeded(&status);
    builtin.assert_has_image(&repo, Some("v1"), &image).await;
    let log = svc.log();
    assert!(!log.contains("panicked"), "{log}");
}
