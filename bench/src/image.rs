//! The bench's images: like the harness's `TestImage`, but every layer is a *valid gzip
//! stream* (deflate "stored" blocks, i.e. level 0) of pseudo-random bytes.
//!
//! Why not the harness's generator: its layers are raw random bytes labelled `tar+gzip`.
//! skopeo sniffs the blob, finds it uncompressed, and gzips it on the way to a `docker://`
//! destination — spending its time in a compressor and writing an image with other digests.
//! With real (stored) gzip, skopeo copies the blobs as they are, like acr-import does, and
//! the data stays incompressible.
//!
//! Big layers are never held in memory: one pass computes the digests, the upload
//! regenerates the stream.

use std::io;

use acr_import_tests::image::{
    Blob, ByteGen, Platform, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST,
};
use acr_import_tests::util::{sha256_digest, Sha256};
use acr_import_tests::OciClient;
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use crc::{Crc, Table, CRC_32_ISO_HDLC};
use futures::Stream;
use serde_json::{json, Value};

/// gzip's CRC-32.
static CRC32: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISO_HDLC);
/// Payload per stored deflate block: at most 65535, and a multiple of 8 so that
/// `ByteGen::fill` continues one stream across blocks.
const BLOCK: usize = 65528;
/// Size of the pieces the stream is emitted in.
const PIECE: usize = 1 << 20;

/// Emits `gzip(level 0)` of `payload` pseudo-random bytes from `seed`, in pieces of about
/// 1 MiB; `raw` sees the uncompressed payload. Stops early when `out` returns false.
fn gzip_stored(
    seed: u64,
    payload: u64,
    mut out: impl FnMut(&[u8]) -> bool,
    mut raw: impl FnMut(&[u8]),
) {
    // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown
    let mut buf: Vec<u8> = Vec::with_capacity(PIECE + BLOCK + 16);
    buf.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut gen = ByteGen::new(seed);
    let mut crc = CRC32.digest();
    let mut left = payload;
    loop {
        let n = left.min(BLOCK as u64) as usize;
        let last = n as u64 == left;
        // Stored block: BFINAL bit, BTYPE=00, padding to the byte; LEN; NLEN.
        buf.push(u8::from(last));
        buf.extend_from_slice(&(n as u16).to_le_bytes());
        buf.extend_from_slice(&(!(n as u16)).to_le_bytes());
        let start = buf.len();
        buf.resize(start + n, 0);
        gen.fill(&mut buf[start..]);
        crc.update(&buf[start..]);
        raw(&buf[start..]);
        left -= n as u64;
        if last {
            buf.extend_from_slice(&crc.finalize().to_le_bytes());
            buf.extend_from_slice(&(payload as u32).to_le_bytes());
            out(&buf);
            return;
        }
        if buf.len() >= PIECE {
            if !out(&buf) {
                return;
            }
            buf.clear();
        }
    }
}

/// A gzip layer: `payload` random bytes, stored.
#[derive(Clone, Debug)]
pub struct Layer {
    seed: u64,
    payload: u64,
    /// Size of the gzip blob.
    pub size: u64,
    pub digest: String,
    /// sha256 of the uncompressed payload (the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

impl Layer {
    pub fn new(seed: u64, payload: u64) -> Self {
        assert!(payload > 0, "empty layer");
        let mut blob = Sha256::new();
        let mut diff = Sha256::new();
        let mut size = 0u64;
        gzip_stored(
            seed,
            payload,
            |c| {
                blob.update(c);
                size += c.len() as u64;
                true
            },
            |c| diff.update(c),
        );
        Self {
            seed,
            payload,
            size,
            digest: blob.finish(),
            diff_id: diff.finish(),
        }
    }

    /// The blob, regenerated on a thread of its own into a bounded channel.
    pub fn stream(&self) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
        let (seed, payload) = (self.seed, self.payload);
        let (tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, io::Error>>(4);
        std::thread::spawn(move || {
            let mut tx = tx;
            gzip_stored(
                seed,
                payload,
                |c| {
                    futures::executor::block_on(futures::SinkExt::send(
                        &mut tx,
                        Ok(Bytes::copy_from_slice(c)),
                    ))
                    .is_ok()
                },
                |_| {},
            );
        });
        rx
    }

    fn descriptor(&self) -> Value {
        json!({"mediaType": OCI_LAYER, "digest": self.digest, "size": self.size})
    }
}

/// A manifest or index: the exact bytes pushed.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub digest: String,
    pub media_type: &'static str,
    pub bytes: Bytes,
}

impl Manifest {
    fn new(media_type: &'static str, value: &Value) -> Self {
        let bytes = Bytes::from(serde_json::to_vec_pretty(value).expect("serialize manifest"));
        Self {
            digest: sha256_digest(&bytes),
            media_type,
            bytes,
        }
    }
}

/// An OCI image (one manifest) or index (one manifest per platform), with distinct layers.
#[derive(Clone, Debug)]
pub struct BenchImage {
    pub top: Manifest,
    pub children: Vec<Manifest>,
    pub configs: Vec<Blob>,
    pub layers: Vec<Layer>,
}

fn mix(seed: u64, salt: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

fn platform_json(p: &Platform) -> Value {
    let mut v = json!({"architecture": p.architecture, "os": p.os});
    if let Some(variant) = &p.variant {
        v["variant"] = json!(variant);
    }
    v
}

impl BenchImage {
    /// One image for `platform` with a gzip layer of each payload size.
    pub fn single(seed: u64, platform: &Platform, payloads: &[u64]) -> Self {
        let layers: Vec<Layer> = payloads
            .iter()
            .enumerate()
            .map(|(i, &p)| Layer::new(mix(seed, 1000 + i as u64), p))
            .collect();
        let mut config = json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {"Labels": {"acr-import-bench.seed": seed.to_string()}},
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "created": "2024-01-01T00:00:00Z",
        });
        if let Some(v) = &platform.variant {
            config["variant"] = json!(v);
        }
        let config = Blob::inline(
            OCI_CONFIG,
            serde_json::to_vec(&config).expect("serialize config"),
        );
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": layers.iter().map(Layer::descriptor).collect::<Vec<_>>(),
        });
        Self {
            top: Manifest::new(OCI_MANIFEST, &manifest),
            children: Vec::new(),
            configs: vec![config],
            layers,
        }
    }

    /// An OCI index with one image per platform, each with its own layers.
    pub fn index(seed: u64, platforms: &[Platform], payloads: &[u64]) -> Self {
        let mut children = Vec::new();
        let mut configs = Vec::new();
        let mut layers = Vec::new();
        let mut entries = Vec::new();
        for (i, p) in platforms.iter().enumerate() {
            let child = Self::single(mix(seed, i as u64 + 1), p, payloads);
            entries.push(json!({
                "mediaType": OCI_MANIFEST,
                "digest": child.top.digest,
                "size": child.top.bytes.len(),
                "platform": platform_json(p),
            }));
            children.push(child.top);
            configs.extend(child.configs);
            layers.extend(child.layers);
        }
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        Self {
            top: Manifest::new(OCI_INDEX, &index),
            children,
            configs,
            layers,
        }
    }

    pub fn digest(&self) -> &str {
        &self.top.digest
    }

    /// Every blob digest (configs and layers).
    pub fn blob_digests(&self) -> Vec<&str> {
        self.configs
            .iter()
            .map(|b| b.digest.as_str())
            .chain(self.layers.iter().map(|l| l.digest.as_str()))
            .collect()
    }

    /// Bytes a copy of the whole image moves: blobs and manifests.
    pub fn total_bytes(&self) -> u64 {
        self.configs.iter().map(|b| b.size).sum::<u64>()
            + self.layers.iter().map(|l| l.size).sum::<u64>()
            + std::iter::once(&self.top)
                .chain(&self.children)
                .map(|m| m.bytes.len() as u64)
                .sum::<u64>()
    }

    /// Pushes blobs, children (by digest) and the top manifest as `repo:tag` to the
    /// anonymous registry at `base`.
    pub async fn push(&self, base: &str, repo: &str, tag: &str) -> Result<()> {
        let client = OciClient::new(base, None);
        let http = reqwest::Client::builder().no_proxy().build()?;
        for c in &self.configs {
            client.push_blob(repo, c).await?;
        }
        for l in &self.layers {
            upload_layer(&http, base, repo, l)
                .await
                .with_context(|| format!("upload {}", l.digest))?;
        }
        for m in &self.children {
            client
                .push_manifest(repo, &m.digest, m.media_type, &m.bytes)
                .await?;
        }
        client
            .push_manifest(repo, tag, self.top.media_type, &self.top.bytes)
            .await?;
        Ok(())
    }
}

/// Starts a blob upload (`POST …/blobs/uploads/`); returns the absolute URL of the monolithic
/// PUT that finishes it with `digest`.
pub async fn start_upload(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    digest: &str,
) -> Result<String> {
    let resp = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .header("Content-Length", "0")
        .send()
        .await?;
    if resp.status().as_u16() != 202 {
        bail!("upload POST answered {}", resp.status());
    }
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow!("upload POST without Location"))?;
    let url = absolute(base, location);
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{sep}digest={digest}"))
}

/// POST an upload, then one streamed monolithic PUT with the digest.
async fn upload_layer(http: &reqwest::Client, base: &str, repo: &str, l: &Layer) -> Result<()> {
    let url = start_upload(http, base, repo, &l.digest).await?;
    let resp = http
        .put(url)
        .header("Content-Length", l.size.to_string())
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(l.stream()))
        .send()
        .await?;
    if resp.status().as_u16() != 201 {
        bail!(
            "upload PUT answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// An upload `Location` made absolute against `base`.
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layer is a gzip stream that `gzip -d` accepts and whose content is the payload.
    #[test]
    fn layer_is_valid_gzip_of_its_payload() {
        let payload = 3 * BLOCK as u64 + 12_345;
        let layer = Layer::new(7, payload);
        let mut blob = Vec::new();
        let mut raw = Vec::new();
        gzip_stored(
            7,
            payload,
            |c| {
                blob.extend_from_slice(c);
                true
            },
            |c| raw.extend_from_slice(c),
        );
        assert_eq!(blob.len() as u64, layer.size);
        assert_eq!(sha256_digest(&blob), layer.digest);
        assert_eq!(sha256_digest(&raw), layer.diff_id);

        let dir = tempfile_dir();
        let path = dir.join("layer.gz");
        std::fs::write(&path, &blob).expect("write layer");
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .expect("run gzip");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.status.success(), "gzip -d failed: {out:?}");
        assert!(out.stdout == raw, "gzip -d output differs from the payload");
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "acr-bench-test-{}",
            acr_import_tests::util::random_suffix(8)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
