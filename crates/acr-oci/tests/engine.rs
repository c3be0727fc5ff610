//! The copy engine (`acr_oci::copy::copy_image`, called as the worker calls it) against the
//! built-in registry served in-process: two registries (source and target) or one (mounts),
//! multi-platform images generated here, faults injected by the harness's wrapper
//! (`support`). Each test starts its own registries on 127.0.0.1:0 over temp dirs.

mod support;

use std::sync::atomic::Ordering;

use acr_oci::{CopyError, OciError};
use support::*;

/// Blobs before the manifests that reference them, children before the index, the index by
/// digest before the tag; each distinct blob uploaded once; the target serves the exact bytes.
#[tokio::test]
async fn graph_goes_bottom_up_and_the_tag_last() {
    let (src, dst) = (start().await, start().await);
    let img = three_platforms(1);
    src.push_index("lib/app", &img, "v1").await;
    src.take_log();

    let mut req = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1"]);
    // Exactly the image's manifest count is allowed.
    req.max_manifests = 4;
    let report = copy(&req).await.expect("copy");

    assert_eq!(report.root_digest.to_string(), img.manifest.digest);
    assert_eq!(report.media_type, OCI_INDEX);
    let order: Vec<String> = report
        .manifests
        .iter()
        .map(|m| m.digest.to_string())
        .collect();
    assert_eq!(order.len(), 4);
    assert_eq!(
        order[3], img.manifest.digest,
        "the root comes last in the report"
    );
    assert_eq!(dst.violations(), Vec::<String>::new());

    let log = dst.take_log();
    let pos = |pred: &dyn Fn(&Seen) -> bool| log.iter().position(pred);
    let last_put = |path: &str| {
        log.iter()
            .rposition(|s| s.method == "PUT" && s.path.contains(path))
            .unwrap_or_else(|| panic!("no PUT of {path}"))
    };
    // The index is stored by its tag's PUT, the last request, not by digest before it.
    let tag_put = last_put("/v2/mirror/app/manifests/v1");
    assert_eq!(
        tag_put,
        log.len() - 1,
        "the tag is the last request: {log:#?}"
    );
    assert!(
        !log.iter().any(|s| s.method == "PUT"
            && s.path
                .contains(&format!("/manifests/{}", img.manifest.digest))),
        "the index went up twice: {log:#?}"
    );
    let index_put = tag_put;
    for child in &img.children {
        let child_put = last_put(&format!("/manifests/{}", child.manifest.digest));
        assert!(child_put < index_put, "child after the index: {log:#?}");
        for b in child.blobs() {
            let upload = pos(&|s: &Seen| {
                s.method == "PUT" && s.path.contains("/blobs/uploads/") && s.mentions(&b.digest)
            })
            .unwrap_or_else(|| panic!("blob {} never uploaded: {log:#?}", b.digest));
            assert!(upload < child_put, "blob after its manifest: {log:#?}");
        }
    }
    // The shared base layer went once.
    let uploads = log
        .iter()
        .filter(|s| s.method == "PUT" && s.path.contains("/blobs/uploads/"))
        .count();
    assert_eq!(uploads, img.unique_blobs().len(), "{log:#?}");
    // A new repository: one look at its tag list (404) instead of a HEAD per manifest.
    let probes: Vec<&Seen> = log
        .iter()
        .filter(|s| s.is("GET", "/v2/mirror/app/tags/list"))
        .collect();
    assert!(
        matches!(probes.as_slice(), [s] if s.status == Some(404)),
        "{log:#?}"
    );
    assert!(
        !log.iter()
            .any(|s| s.method == "HEAD" && s.path.contains("/manifests/")),
        "{log:#?}"
    );
    assert!(log.iter().all(|s| s.status.is_some_and(|c| c < 400)
        || s.method == "HEAD"
        || s.path.contains("/tags/list")));

    let (status, ct, body) = dst.get("v2/mirror/app/manifests/v1").await;
    assert_eq!(status, 200);
    assert_eq!(ct.as_deref(), Some(OCI_INDEX));
    assert_eq!(body, img.manifest.bytes, "manifest bytes pushed as fetched");
    for b in img.unique_blobs() {
        let (status, _, body) = dst.get(&format!("v2/mirror/app/blobs/{}", b.digest)).await;
        assert_eq!(status, 200);
        assert_eq!(body, b.bytes);
    }
}

/// Only a repository the target does not know skips the manifest HEADs. A repository found
/// to exist is remembered by the client: later copies into it send no probe, only HEADs.
#[tokio::test]
async fn a_known_repository_is_probed_once_then_headed() {
    let (src, dst) = (start().await, start().await);
    let (one, two, three) = (
        three_platforms(21),
        three_platforms(22),
        three_platforms(23),
    );
    src.push_index("lib/app", &one, "v1").await;
    src.push_index("lib/app", &two, "v2").await;
    src.push_index("lib/app", &three, "v3").await;
    let first = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1"]);
    copy(&first).await.expect("first copy");
    dst.take_log();

    let manifest_heads = |log: &[Seen]| {
        log.iter()
            .filter(|s| s.method == "HEAD" && s.path.contains("/manifests/"))
            .count()
    };
    let probes = |log: &[Seen]| {
        log.iter()
            .filter(|s| s.is("GET", "/v2/mirror/app/tags/list"))
            .map(|s| s.status)
            .collect::<Vec<_>>()
    };
    // The repository now exists: the probe says so (200), and the root and its children
    // get their HEADs as before.
    let mut second = request(&src, "lib/app", "v2", &dst, "mirror/app", &["v2"]);
    second.target = first.target.clone();
    copy(&second).await.expect("second copy");
    let log = dst.take_log();
    assert_eq!(probes(&log), [Some(200)], "{log:#?}");
    assert_eq!(
        manifest_heads(&log),
        two.manifest_count() as usize,
        "{log:#?}"
    );

    // Remembered: no probe at all through the same client.
    let mut third = request(&src, "lib/app", "v3", &dst, "mirror/app", &["v3"]);
    third.target = first.target.clone();
    copy(&third).await.expect("third copy");
    let log = dst.take_log();
    assert!(probes(&log).is_empty(), "{log:#?}");
    assert_eq!(
        manifest_heads(&log),
        three.manifest_count() as usize,
        "{log:#?}"
    );
    for (tag, img) in [("v1", &one), ("v2", &two), ("v3", &three)] {
        let (_, _, body) = dst.get(&format!("v2/mirror/app/manifests/{tag}")).await;
        assert_eq!(body, img.manifest.bytes);
    }
    assert_eq!(dst.violations(), Vec::<String>::new());
}

/// Only 404 `NAME_UNKNOWN` makes a repository new: a bare 404 or any other answer to the
/// probe means HEADs as before, and the copy goes on.
#[tokio::test]
async fn an_unclear_probe_answer_means_heads_as_before() {
    for status in [404, 400, 401] {
        let (src, dst) = (start().await, start().await);
        let img = three_platforms(31);
        src.push_index("lib/app", &img, "v1").await;
        *dst.faults.tags_list.lock().expect("lock") = Some(status);
        dst.take_log();

        let req = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1"]);
        copy(&req).await.unwrap_or_else(|e| panic!("{status}: {e}"));
        let log = dst.take_log();
        assert!(
            log.iter()
                .any(|s| s.is("GET", "/v2/mirror/app/tags/list") && s.status == Some(status)),
            "{status}: {log:#?}"
        );
        let heads = log
            .iter()
            .filter(|s| s.method == "HEAD" && s.path.contains("/manifests/"))
            .count();
        assert_eq!(
            heads as u64,
            img.manifest_count(),
            "{status}: a HEAD per manifest: {log:#?}"
        );
        assert!(dst.has_manifest("mirror/app", "v1").await, "{status}");
    }
}

/// The counters add up to the image: manifests, distinct blobs, their bytes.
#[tokio::test]
async fn progress_counts_the_whole_image() {
    let (src, dst) = (start().await, start().await);
    let img = three_platforms(2);
    src.push_index("lib/app", &img, "v1").await;

    let req = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1"]);
    copy(&req).await.expect("copy");
    let p = req.progress.snapshot();
    assert_eq!(p.manifests_total, img.manifest_count());
    assert_eq!(p.manifests_done, img.manifest_count());
    assert_eq!(p.blobs_total, img.unique_blobs().len() as u64);
    assert_eq!(p.blobs_done, img.unique_blobs().len() as u64);
    assert_eq!(p.bytes_total, img.blob_bytes());
    assert_eq!(p.bytes_copied, img.blob_bytes());
    assert_eq!(p.bytes_skipped, 0);
    assert_eq!(
        p.source_digest.as_deref(),
        Some(img.manifest.digest.as_str())
    );
    assert!(req.progress.percent() > 98.0);
}

/// A manifest the target has brings its whole sub-graph: a second copy moves nothing but the
/// tag; a new index sharing a child copies only what is new, and skips a shared layer (the
/// upload's POST, a mount from the repository itself, finds it there: 201, nothing sent).
#[tokio::test]
async fn present_sub_graphs_are_skipped() {
    let (src, dst) = (start().await, start().await);
    let img = three_platforms(3);
    src.push_index("lib/app", &img, "v1").await;
    copy(&request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1"]))
        .await
        .expect("first copy");
    dst.take_log();
    src.take_log();

    // Again: the root is there, so nothing under it is looked at.
    let req = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1", "again"]);
    copy(&req).await.expect("second copy");
    let p = req.progress.snapshot();
    assert_eq!(p.bytes_copied, 0);
    assert_eq!((p.blobs_total, p.bytes_total), (0, 0));
    assert_eq!(p.manifests_total, img.manifest_count());
    assert_eq!(
        p.manifests_done,
        img.manifest_count(),
        "skipped manifests count as done"
    );
    let log = dst.take_log();
    assert!(
        !log.iter().any(|s| s.path.contains("/blobs/")),
        "no blob request: {log:#?}"
    );
    let puts: Vec<&str> = log
        .iter()
        .filter(|s| s.method == "PUT")
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(
        puts,
        [
            "/v2/mirror/app/manifests/v1",
            "/v2/mirror/app/manifests/again"
        ]
    );
    let src_log = src.take_log();
    assert!(
        !src_log.iter().any(|s| s.path.contains("/blobs/")),
        "no blob read at the source: {src_log:#?}"
    );
    assert!(dst.has_manifest("mirror/app", "again").await);

    // A new index: child 0 of the first (present) and a new child that shares the base layer.
    let base = img.children[0].layers[0].clone();
    let fresh = Image::new("riscv64", vec![base.clone(), layer(200 * 1024, 399)]);
    let next = Index::new(vec![img.children[0].clone(), fresh.clone()]);
    src.push_index("lib/app", &next, "v2").await;
    dst.take_log();
    let req = request(&src, "lib/app", "v2", &dst, "mirror/app", &["v2"]);
    copy(&req).await.expect("third copy");
    let p = req.progress.snapshot();
    let fresh_bytes: u64 = fresh.blobs().map(|b| b.bytes.len() as u64).sum();
    assert_eq!(p.manifests_total, 3);
    assert_eq!(p.manifests_done, 3);
    assert_eq!(p.blobs_total, 3, "the new child's config and two layers");
    assert_eq!(p.bytes_total, fresh_bytes);
    assert_eq!(
        p.bytes_skipped,
        base.bytes.len() as u64,
        "the shared layer was there"
    );
    assert_eq!(p.bytes_copied, fresh_bytes - base.bytes.len() as u64);
    let log = dst.take_log();
    let about_base: Vec<&Seen> = log.iter().filter(|s| s.mentions(&base.digest)).collect();
    assert!(
        matches!(about_base.as_slice(), [s] if s.method == "POST"
            && s.path.contains("mount=")
            && s.path.contains("from=mirror%2Fapp")
            && s.status == Some(201)),
        "one request about the shared layer, its presence check: {log:#?}"
    );
    let present_child = &img.children[0];
    for b in present_child
        .layers
        .iter()
        .skip(1)
        .chain([&present_child.config])
    {
        assert!(
            !log.iter().any(|s| s.mentions(&b.digest)),
            "the present child's blob {} was looked at: {log:#?}",
            b.digest
        );
    }
    assert!(!log
        .iter()
        .any(|s| s.method == "PUT" && s.path.ends_with(&present_child.manifest.digest)));
    assert_eq!(dst.violations(), Vec::<String>::new());
}

/// Within one registry blobs are mounted from the source repository, not copied.
#[tokio::test]
async fn same_registry_mounts_blobs() {
    let reg = start().await;
    let img = three_platforms(4);
    reg.push_index("lib/app", &img, "v1").await;
    reg.take_log();

    let req = request(&reg, "lib/app", "v1", &reg, "team/app", &["v1"]);
    copy(&req).await.expect("copy");
    let log = reg.take_log();
    let mounts: Vec<&Seen> = log
        .iter()
        .filter(|s| s.method == "POST" && s.path.contains("mount="))
        .collect();
    assert_eq!(mounts.len(), img.unique_blobs().len(), "{log:#?}");
    assert!(mounts
        .iter()
        .all(|m| m.path.contains("from=lib%2Fapp") && m.status == Some(201)));
    assert!(
        !log.iter().any(|s| s.is("GET", "/v2/lib/app/blobs/")),
        "no blob was read: {log:#?}"
    );
    assert!(!log
        .iter()
        .any(|s| s.is("PUT", "/v2/team/app/blobs/uploads/")));
    let p = req.progress.snapshot();
    assert_eq!(p.bytes_copied, 0);
    assert_eq!(p.bytes_skipped, img.blob_bytes());
    assert_eq!(p.blobs_done, img.unique_blobs().len() as u64);
    for b in img.unique_blobs() {
        assert!(reg.has_blob("team/app", &b.digest).await);
    }
    assert!(reg.has_manifest("team/app", "v1").await);
}

/// A mount the registry refuses (403) or declines (202, an ordinary session) falls back to
/// copying the bytes.
#[tokio::test]
async fn refused_or_declined_mounts_fall_back_to_uploads() {
    for mode in [MountMode::Refuse, MountMode::Decline] {
        let reg = start().await;
        let img = three_platforms(5);
        reg.push_index("lib/app", &img, "v1").await;
        reg.take_log();
        *reg.faults.mount.lock().expect("lock") = mode;

        let req = request(&reg, "lib/app", "v1", &reg, "team/app", &["v1"]);
        copy(&req).await.unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        let log = reg.take_log();
        let n = img.unique_blobs().len();
        let mounts = log.iter().filter(|s| s.path.contains("mount=")).count();
        let posts = log
            .iter()
            .filter(|s| s.is("POST", "/v2/team/app/blobs/uploads/"))
            .count();
        let reads = log
            .iter()
            .filter(|s| s.is("GET", "/v2/lib/app/blobs/"))
            .count();
        let puts = log
            .iter()
            .filter(|s| s.is("PUT", "/v2/team/app/blobs/uploads/"))
            .count();
        match mode {
            // The wrapper answered the mount; a plain POST opens the session.
            MountMode::Refuse => assert_eq!((mounts, posts), (n, 2 * n), "{log:#?}"),
            // The 202 of the mount is the session (the wrapper stripped `mount=` on its way).
            _ => assert_eq!((mounts, posts), (n, n), "{log:#?}"),
        }
        assert_eq!((reads, puts), (n, n), "{mode:?}: {log:#?}");
        let p = req.progress.snapshot();
        assert_eq!(p.bytes_copied, img.blob_bytes(), "{mode:?}");
        assert_eq!(p.bytes_skipped, 0, "{mode:?}");
        for b in img.unique_blobs() {
            let (status, _, body) = reg.get(&format!("v2/team/app/blobs/{}", b.digest)).await;
            assert_eq!((status.as_u16(), &body), (200, &b.bytes), "{mode:?}");
        }
        assert!(reg.has_manifest("team/app", "v1").await);
    }
}

/// From another registry, a target that refuses the presence check (a mount from the target
/// repository itself) gets a HEAD and a plain session per blob instead, and the copy goes on.
/// Its client remembers: only the blobs already under way when the first refusal came back
/// asked, and a later copy through the same client asks none.
#[tokio::test]
async fn a_refused_presence_check_falls_back_to_head() {
    let (src, dst) = (start().await, start().await);
    let img = three_platforms(6);
    src.push_index("lib/app", &img, "v1").await;
    *dst.faults.mount.lock().expect("lock") = MountMode::Refuse;
    dst.take_log();

    let req = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1"]);
    copy(&req).await.expect("copy");
    let log = dst.take_log();
    let n = img.unique_blobs().len();
    let count = |log: &[Seen], method: &str, prefix: &str| {
        log.iter().filter(|s| s.is(method, prefix)).count()
    };
    let probes = log.iter().filter(|s| s.path.contains("mount=")).count();
    // Blobs run `concurrency * 2` at a time: at most that many asked before the answer.
    assert!(
        (1..=2 * req.concurrency).contains(&probes) && probes < n,
        "{probes} probes: {log:#?}"
    );
    assert!(!req.target.presence_mounts(), "the refusal is remembered");
    assert_eq!(count(&log, "HEAD", "/v2/mirror/app/blobs/"), n, "{log:#?}");
    assert_eq!(
        count(&log, "POST", "/v2/mirror/app/blobs/uploads/"),
        n + probes,
        "{log:#?}"
    );
    assert_eq!(
        count(&log, "PUT", "/v2/mirror/app/blobs/uploads/"),
        n,
        "{log:#?}"
    );
    assert_eq!(req.progress.snapshot().bytes_copied, img.blob_bytes());
    assert_eq!(dst.violations(), Vec::<String>::new());
    assert!(dst.has_manifest("mirror/app", "v1").await);

    // A second image through the same target client: HEAD and a plain session, no probe.
    let other = three_platforms(7);
    src.push_index("lib/other", &other, "v1").await;
    let mut again = request(&src, "lib/other", "v1", &dst, "mirror/other", &["v1"]);
    again.target = req.target.clone();
    copy(&again).await.expect("second copy");
    let log = dst.take_log();
    let m = other.unique_blobs().len();
    assert!(!log.iter().any(|s| s.path.contains("mount=")), "{log:#?}");
    assert_eq!(
        count(&log, "HEAD", "/v2/mirror/other/blobs/"),
        m,
        "{log:#?}"
    );
    assert_eq!(
        count(&log, "POST", "/v2/mirror/other/blobs/uploads/"),
        m,
        "{log:#?}"
    );
    assert!(dst.has_manifest("mirror/other", "v1").await);
}

/// A download that breaks midway resumes with `Range` from where it broke; the blob arrives
/// whole and is counted once.
#[tokio::test]
async fn a_cut_download_resumes_with_range() {
    let (src, dst) = (start().await, start().await);
    let img = three_platforms(6);
    src.push_index("lib/app", &img, "v1").await;
    let victim = img.children[0].layers[0].clone();
    let cut_at = 300 * 1024;
    *src.faults.cut_once.lock().expect("lock") = Some((victim.digest.clone(), cut_at));
    src.take_log();

    let req = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1"]);
    copy(&req).await.expect("copy");
    let log = src.take_log();
    let gets: Vec<&Seen> = log
        .iter()
        .filter(|s| s.is("GET", &format!("/v2/lib/app/blobs/{}", victim.digest)))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(gets[0].range, None);
    let range = gets[1].range.clone().expect("the second GET has a Range");
    let from: usize = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("Range {range}"));
    assert!(from > 0 && from <= cut_at, "resumed from {from}");
    assert_eq!(gets[1].status, Some(206));

    let (status, _, body) = dst
        .get(&format!("v2/mirror/app/blobs/{}", victim.digest))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, victim.bytes);
    let p = req.progress.snapshot();
    assert_eq!(p.bytes_copied, img.blob_bytes(), "counted once");
    assert!(dst.has_manifest("mirror/app", "v1").await);
}

/// A source that serves wrong bytes for a digest fails the copy on the source side; the
/// target never commits that blob, nor any manifest above it, nor the tag.
#[tokio::test]
async fn a_corrupt_blob_is_never_committed() {
    let (src, dst) = (start().await, start().await);
    let img = three_platforms(7);
    src.push_index("lib/app", &img, "v1").await;
    let child = &img.children[1];
    let victim = child.layers[1].clone();
    *src.faults.corrupt.lock().expect("lock") = Some(victim.digest.clone());

    let req = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1"]);
    let err = copy(&req)
        .await
        .expect_err("a corrupt blob must fail the copy");
    match &err {
        CopyError::Source(OciError::DigestMismatch { expected, .. }) => {
            assert_eq!(expected, &victim.digest)
        }
        other => panic!("expected a source digest mismatch, got {other:?}"),
    }
    // Display names the side; the chain adds the cause once.
    assert_eq!(err.to_string(), "source registry");
    let chain = acr_core::error_chain(&err);
    assert!(chain.starts_with("source registry: "), "{chain}");
    assert_eq!(chain.matches(&victim.digest).count(), 1, "{chain}");
    assert!(!dst.has_blob("mirror/app", &victim.digest).await);
    assert!(!dst.has_manifest("mirror/app", &child.manifest.digest).await);
    assert!(!dst.has_manifest("mirror/app", &img.manifest.digest).await);
    assert!(!dst.has_manifest("mirror/app", "v1").await);
    let p = req.progress.snapshot();
    assert!(p.bytes_copied < img.blob_bytes());
}

/// Too many manifests fail the copy before a child is fetched or anything is written; so does
/// a layer over the size limit.
#[tokio::test]
async fn limits_stop_the_copy_before_it_writes() {
    let (src, dst) = (start().await, start().await);
    let img = three_platforms(8);
    src.push_index("lib/app", &img, "v1").await;
    src.take_log();

    let mut req = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1"]);
    req.max_manifests = 3;
    match copy(&req).await {
        Err(CopyError::TooManyManifests { count, limit }) => assert_eq!((count, limit), (4, 3)),
        other => panic!("expected TooManyManifests, got {other:?}"),
    }
    let log = src.take_log();
    assert_eq!(log.len(), 1, "only the index was read: {log:#?}");
    assert!(log[0].is("GET", "/v2/lib/app/manifests/v1"));
    assert!(dst.take_log().is_empty(), "nothing was asked of the target");

    let biggest = img
        .unique_blobs()
        .iter()
        .map(|b| b.bytes.len() as u64)
        .max()
        .unwrap_or(0);
    let mut req = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1"]);
    req.max_layer_bytes = Some(biggest - 1);
    match copy(&req).await {
        Err(CopyError::LayerTooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (biggest, biggest - 1))
        }
        other => panic!("expected LayerTooLarge, got {other:?}"),
    }
    assert!(dst.take_log().is_empty(), "nothing was asked of the target");
    assert_eq!(req.progress.manifests_done.load(Ordering::Relaxed), 0);
}

/// NoForce: an existing target tag fails the copy before the source is read.
#[tokio::test]
async fn no_force_stops_at_an_existing_tag() {
    let (src, dst) = (start().await, start().await);
    let img = three_platforms(9);
    src.push_index("lib/app", &img, "v1").await;
    dst.push_index("mirror/app", &img, "v1").await;
    src.take_log();
    dst.take_log();

    let mut req = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1"]);
    req.force = false;
    match copy(&req).await {
        Err(CopyError::TagExists { repository, tag }) => {
            assert_eq!((repository.as_str(), tag.as_str()), ("mirror/app", "v1"))
        }
        other => panic!("expected TagExists, got {other:?}"),
    }
    assert!(src.take_log().is_empty(), "the source was not read");
    let log = dst.take_log();
    assert!(log.iter().all(|s| s.method == "HEAD"), "{log:#?}");
}

/// The harness's order check itself: an index pushed before its children is seen.
#[tokio::test]
async fn harness_sees_a_manifest_pushed_before_what_it_references() {
    let reg = start().await;
    let img = three_platforms(10);
    reg.push_manifest("lib/app", &img.manifest.digest, &img.manifest)
        .await;
    let v = reg.violations();
    assert_eq!(v.len(), img.children.len(), "{v:#?}");
    assert!(v[0].contains(&img.children[0].manifest.digest), "{v:#?}");
}

/// Several target repositories: each gets the whole graph by digest before any tag moves;
/// the later ones mount their blobs from the first within the target registry.
#[tokio::test]
async fn later_target_repositories_mount_from_the_first() {
    let (src, dst) = (start().await, start().await);
    let img = three_platforms(11);
    src.push_index("lib/app", &img, "v1").await;

    let mut req = request(&src, "lib/app", "v1", &dst, "mirror/a", &["v1"]);
    req.targets.push(acr_oci::CopyTarget {
        repository: repo("mirror/b"),
        tags: vec![tag("v1"), tag("stable")],
    });
    copy(&req).await.expect("copy");
    assert_eq!(dst.violations(), Vec::<String>::new());
    let log = dst.take_log();
    let first_tag = log
        .iter()
        .position(|s| s.method == "PUT" && s.path.contains("/manifests/") && !s.mentions("sha256:"))
        .expect("a tag PUT");
    let last_digest_put = log
        .iter()
        .rposition(|s| s.method == "PUT" && s.path.contains("/manifests/sha256:"))
        .expect("a digest PUT");
    assert!(
        last_digest_put < first_tag,
        "a tag moved before every repository had the graph: {log:#?}"
    );
    // Into mirror/a each session's POST asked for the blob from mirror/a itself (202: absent);
    // mirror/b mounted every blob from mirror/a.
    let (mounts, probes): (Vec<&Seen>, Vec<&Seen>) = log
        .iter()
        .filter(|s| s.path.contains("mount="))
        .partition(|s| s.path.starts_with("/v2/mirror/b/"));
    assert_eq!(mounts.len(), img.unique_blobs().len(), "{log:#?}");
    assert!(mounts
        .iter()
        .all(|m| m.path.contains("from=mirror%2Fa") && m.status == Some(201)));
    assert_eq!(probes.len(), img.unique_blobs().len(), "{log:#?}");
    assert!(probes.iter().all(|m| m.path.starts_with("/v2/mirror/a/")
        && m.path.contains("from=mirror%2Fa")
        && m.status == Some(202)));

    let p = req.progress.snapshot();
    assert_eq!(p.manifests_total, 2 * img.manifest_count());
    assert_eq!(p.manifests_done, 2 * img.manifest_count());
    assert_eq!(p.bytes_total, 2 * img.blob_bytes());
    assert_eq!(p.bytes_copied, img.blob_bytes(), "the source was read once");
    assert_eq!(p.bytes_skipped, img.blob_bytes(), "mounted");
    for (r, t) in [
        ("mirror/a", "v1"),
        ("mirror/b", "v1"),
        ("mirror/b", "stable"),
    ] {
        let (status, _, body) = dst.get(&format!("v2/{r}/manifests/{t}")).await;
        assert_eq!(
            (status.as_u16(), &body),
            (200, &img.manifest.bytes),
            "{r}:{t}"
        );
    }
}

/// A re-run of a NoForce import (`resumed`) takes a tag already at the source's digest as its
/// earlier attempt's work, and still refuses a tag at another digest.
#[tokio::test]
async fn a_resumed_no_force_copy_accepts_its_own_tag_only() {
    let (src, dst) = (start().await, start().await);
    let img = three_platforms(12);
    let other = three_platforms(13);
    src.push_index("lib/app", &img, "v1").await;
    dst.push_index("mirror/app", &img, "v1").await;
    dst.push_index("mirror/app", &other, "taken").await;

    let mut req = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1"]);
    req.force = false;
    req.resumed = true;
    let report = copy(&req).await.expect("its own tag is no conflict");
    assert_eq!(report.root_digest.to_string(), img.manifest.digest);

    let mut req = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1", "taken"]);
    req.force = false;
    req.resumed = true;
    match copy(&req).await {
        Err(CopyError::TagExists { tag, .. }) => assert_eq!(tag.as_str(), "taken"),
        other => panic!("expected TagExists, got {other:?}"),
    }
    let (_, _, body) = dst.get("v2/mirror/app/manifests/taken").await;
    assert_eq!(body, other.manifest.bytes, "the other tag did not move");
}

/// A pinned digest (resolved by an earlier attempt) is copied even after the source tag moved.
#[tokio::test]
async fn a_pinned_digest_wins_over_a_moved_tag() {
    let (src, dst) = (start().await, start().await);
    let first = three_platforms(14);
    let moved = three_platforms(15);
    src.push_index("lib/app", &first, "v1").await;
    src.push_index("lib/app", &moved, "v1").await;

    let mut req = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1"]);
    req.pinned = Some(acr_core::reference::Digest::parse(&first.manifest.digest).expect("digest"));
    let report = copy(&req).await.expect("copy");
    assert_eq!(report.root_digest.to_string(), first.manifest.digest);
    let (_, _, body) = dst.get("v2/mirror/app/manifests/v1").await;
    assert_eq!(body, first.manifest.bytes);
    assert!(!dst.has_manifest("mirror/app", &moved.manifest.digest).await);
}

/// Nested indexes: the root lists an inner index and, directly, one of that index's images.
/// With the inner index (and so that image) already at the target, every manifest should be
/// counted done once.
#[tokio::test]
async fn progress_counts_a_shared_child_of_present_indexes_once() {
    let (src, dst) = (start().await, start().await);
    let img = three_platforms(16);
    let (x, y) = (&img.children[0], &img.children[1]);
    let inner = index_over(&[(&x.manifest, "amd64"), (&y.manifest, "arm64")]);
    let root = index_over(&[(&inner, "amd64"), (&x.manifest, "amd64")]);
    for r in [&src, &dst] {
        r.push_image("lib/app", x).await;
        r.push_image("lib/app", y).await;
        r.push_manifest("lib/app", &inner.digest, &inner).await;
    }
    src.push_manifest("lib/app", "v1", &root).await;

    let req = request(&src, "lib/app", "v1", &dst, "lib/app", &["v1"]);
    copy(&req).await.expect("copy");
    let (_, _, body) = dst.get("v2/lib/app/manifests/v1").await;
    assert_eq!(body, root.bytes);
    let p = req.progress.snapshot();
    assert_eq!(p.manifests_total, 4, "root, inner, x, y");
    assert_eq!(p.manifests_done, 4, "each manifest counted once");
}

/// An index may list one manifest twice (one image under two platform descriptors): the
/// manifest limit counts distinct manifests.
#[tokio::test]
async fn the_manifest_limit_counts_distinct_manifests() {
    let (src, dst) = (start().await, start().await);
    let img = three_platforms(17);
    let (x, y) = (&img.children[0], &img.children[1]);
    let root = index_over(&[
        (&x.manifest, "arm64"),
        (&x.manifest, "arm"),
        (&y.manifest, "s390x"),
    ]);
    src.push_image("lib/app", x).await;
    src.push_image("lib/app", y).await;
    src.push_manifest("lib/app", "v1", &root).await;

    let mut req = request(&src, "lib/app", "v1", &dst, "mirror/app", &["v1"]);
    req.max_manifests = 3;
    let report = copy(&req)
        .await
        .expect("3 distinct manifests are within a limit of 3");
    assert_eq!(report.manifests.len(), 3);
}
