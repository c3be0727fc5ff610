//! Deterministic test images, built in memory from a seed.
//!
//! Layers are pseudo-random bytes (xorshift64*, not a real tar: registries don't look
//! inside). Big layers are never held in memory: [`Blob::generated`] hashes the stream
//! once and [`Blob::stream`] regenerates it for the upload. Manifests and indexes are kept
//! as the exact bytes that get pushed, and their digests are computed from those bytes.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{json, Value};

use crate::util::{sha256_digest, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
pub const HELM_CHART: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// The OCI empty descriptor's media type (config of artifacts); its content is `{}`.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Every manifest media type, as an `Accept` header value.
pub const ALL_MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Size of the chunks generated blobs are produced and streamed in (a multiple of 8).
const CHUNK: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Oci,
    Docker,
}

impl Format {
    pub fn manifest_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_MANIFEST,
            Format::Docker => DOCKER_MANIFEST,
        }
    }
    pub fn index_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_INDEX,
            Format::Docker => DOCKER_LIST,
        }
    }
    pub fn config_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_CONFIG,
            Format::Docker => DOCKER_CONFIG,
        }
    }
    pub fn layer_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_LAYER,
            Format::Docker => DOCKER_LAYER,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Self {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }
    pub fn amd64() -> Self {
        Self::new("linux", "amd64", None)
    }
    pub fn arm64() -> Self {
        Self::new("linux", "arm64", Some("v8"))
    }
    pub fn arm_v7() -> Self {
        Self::new("linux", "arm", Some("v7"))
    }
    /// linux/amd64, linux/arm64/v8, linux/arm/v7.
    pub fn three() -> Vec<Self> {
        vec![Self::amd64(), Self::arm64(), Self::arm_v7()]
    }
    fn to_json(&self) -> Value {
        let mut v = json!({"architecture": self.architecture, "os": self.os});
        if let Some(variant) = &self.variant {
            v["variant"] = json!(variant);
        }
        v
    }
}

/// A fast deterministic byte generator (xorshift64*).
#[derive(Clone)]
pub struct ByteGen {
    state: u64,
}

impl ByteGen {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self { state: z | 1 }
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf`. Successive calls continue the same stream as long as every call but the
    /// last has a length that is a multiple of 8.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let v = self.next_u64().to_le_bytes();
            let n = rest.len();
            rest.copy_from_slice(&v[..n]);
        }
    }

    /// Generates `size` bytes in chunks of at most 1 MiB, calling `f` on each until it
    /// returns false.
    pub fn for_each_chunk(seed: u64, size: u64, mut f: impl FnMut(&[u8]) -> bool) {
        let mut gen = Self::new(seed);
        let mut buf = vec![0u8; CHUNK];
        let mut left = size;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            gen.fill(&mut buf[..n]);
            if !f(&buf[..n]) {
                return;
            }
            left -= n as u64;
        }
    }
}

#[derive(Clone, Debug)]
enum BlobContent {
    Inline(Bytes),
    Generated { seed: u64 },
}

/// A blob (config or layer) with its digest, size and media type.
#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    content: BlobContent,
}

impl Blob {
    pub fn inline(media_type: &str, bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            digest: sha256_digest(&bytes),
            size: bytes.len() as u64,
            media_type: media_type.to_string(),
            content: BlobContent::Inline(bytes),
        }
    }

    /// A pseudo-random blob of `size` bytes. Small ones are kept in memory; big ones
    /// (over 8 MiB) are hashed here and regenerated when streamed.
    pub fn generated(media_type: &str, seed: u64, size: u64) -> Self {
        if size <= 8 << 20 {
            let mut buf = vec![0u8; size as usize];
            ByteGen::new(seed).fill(&mut buf);
            return Self::inline(media_type, buf);
        }
        let mut hasher = Sha256::new();
        ByteGen::for_each_chunk(seed, size, |c| {
            hasher.update(c);
            true
        });
        Self {
            digest: hasher.finish(),
            size,
            media_type: media_type.to_string(),
            content: BlobContent::Generated { seed },
        }
    }

    /// The bytes, when they are held in memory.
    pub fn bytes(&self) -> Option<&Bytes> {
        match &self.content {
            BlobContent::Inline(b) => Some(b),
            BlobContent::Generated { .. } => None,
        }
    }

    /// The content as a stream of chunks (regenerated for generated blobs).
    pub fn stream(&self) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        match self.content.clone() {
            BlobContent::Inline(b) => futures::stream::iter(vec![Ok(b)]).left_stream(),
            BlobContent::Generated { seed } => {
                let size = self.size;
                let (tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
                // Generate on a blocking thread; the bounded channel keeps memory flat.
                std::thread::spawn(move || {
                    let mut tx = tx;
                    // Stops as soon as the receiver is gone (upload aborted).
                    ByteGen::for_each_chunk(seed, size, |c| {
                        futures::executor::block_on(futures::SinkExt::send(
                            &mut tx,
                            Ok(Bytes::copy_from_slice(c)),
                        ))
                        .is_ok()
                    });
                });
                rx.right_stream()
            }
        }
    }

    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }

    /// `{"mediaType", "digest", "size"}` of this blob, for hand-built manifests.
    pub fn descriptor_json(&self) -> Value {
        self.descriptor()
    }
}

/// A manifest or index as pushed: exact bytes, media type and digest.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Bytes,
    pub platform: Option<Platform>,
}

impl Manifest {
    /// A hand-built manifest: `value` pretty-printed is what gets pushed.
    pub fn from_json(media_type: &str, value: &Value, platform: Option<Platform>) -> Self {
        Self::new(media_type, value, platform)
    }

    /// A manifest of exactly these bytes.
    pub fn from_bytes(media_type: &str, bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            digest: sha256_digest(&bytes),
            media_type: media_type.to_string(),
            bytes,
            platform: None,
        }
    }

    /// The descriptor of this manifest (with its platform, if any), for an index.
    pub fn descriptor_json(&self) -> Value {
        let mut d = json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        });
        if let Some(p) = &self.platform {
            d["platform"] = p.to_json();
        }
        d
    }

    fn new(media_type: &str, value: &Value, platform: Option<Platform>) -> Self {
        let bytes = Bytes::from(serde_json::to_vec_pretty(value).expect("serialize manifest"));
        Self {
            digest: sha256_digest(&bytes),
            media_type: media_type.to_string(),
            bytes,
            platform,
        }
    }
}

/// A whole image: the top manifest (image manifest or index), the child manifests of an
/// index, and every blob. Push order: blobs, children, top.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub top: Manifest,
    pub children: Vec<Manifest>,
    pub blobs: Vec<Blob>,
}

impl TestImage {
    /// A single-platform (linux/amd64) image with one layer per entry of `layer_sizes`.
    pub fn single(seed: u64, format: Format, layer_sizes: &[u64]) -> Self {
        Self::single_for(seed, format, Platform::amd64(), layer_sizes)
    }

    /// A single-platform image for `platform`.
    pub fn single_for(seed: u64, format: Format, platform: Platform, layer_sizes: &[u64]) -> Self {
        let layers: Vec<Blob> = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                Blob::generated(format.layer_type(), mix(seed, 1000 + i as u64), size)
            })
            .collect();
        let mut config = json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {"Labels": {"acr-import-tests.seed": seed.to_string()}},
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
            },
            "created": "2024-01-01T00:00:00Z",
        });
        if let Some(v) = &platform.variant {
            config["variant"] = json!(v);
        }
        let config = Blob::inline(
            format.config_type(),
            serde_json::to_vec(&config).expect("serialize config"),
        );
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": format.manifest_type(),
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        if format == Format::Oci {
            manifest["annotations"] =
                json!({"org.opencontainers.image.ref.name": format!("seed-{seed}")});
        }
        let top = Manifest::new(format.manifest_type(), &manifest, Some(platform));
        let mut blobs = vec![config];
        blobs.extend(layers);
        Self {
            top,
            children: Vec::new(),
            blobs,
        }
    }

    /// An index (OCI) or manifest list (Docker) with one child image per platform; each child
    /// has its own layers of `layer_sizes`.
    pub fn index(seed: u64, format: Format, platforms: &[Platform], layer_sizes: &[u64]) -> Self {
        let mut children = Vec::new();
        let mut blobs: Vec<Blob> = Vec::new();
        for (i, p) in platforms.iter().enumerate() {
            let child = Self::single_for(mix(seed, i as u64 + 1), format, p.clone(), layer_sizes);
            for b in child.blobs {
                if !blobs.iter().any(|x| x.digest == b.digest) {
                    blobs.push(b);
                }
            }
            children.push(child.top);
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": format.index_type(),
            "manifests": children.iter().map(|m| json!({
                "mediaType": m.media_type,
                "digest": m.digest,
                "size": m.bytes.len(),
                "platform": m.platform.as_ref().map(Platform::to_json),
            })).collect::<Vec<_>>(),
        });
        Self {
            top: Manifest::new(format.index_type(), &index, None),
            children,
            blobs,
        }
    }

    /// The 3-platform (amd64, arm64/v8, arm/v7) OCI index most tests use.
    pub fn three_platform(seed: u64) -> Self {
        Self::index(seed, Format::Oci, &Platform::three(), &[2048, 40_000])
    }

    pub fn digest(&self) -> &str {
        &self.top.digest
    }

    pub fn media_type(&self) -> &str {
        &self.top.media_type
    }

    pub fn is_index(&self) -> bool {
        !self.children.is_empty()
    }

    pub fn child_digests(&self) -> Vec<String> {
        self.children.iter().map(|m| m.digest.clone()).collect()
    }

    /// Top digest and every child digest.
    pub fn manifest_digests(&self) -> Vec<String> {
        let mut v = vec![self.top.digest.clone()];
        v.extend(self.child_digests());
        v
    }

    pub fn blob_digests(&self) -> Vec<String> {
        self.blobs.iter().map(|b| b.digest.clone()).collect()
    }

    pub fn total_blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

/// Artifacts and unusual graphs.
impl TestImage {
    /// A Helm 3 chart as `helm push` stores it: an OCI manifest (without a `mediaType` field,
    /// like Helm up to 3.12 writes it) with a Helm config and one chart layer.
    pub fn helm_chart(seed: u64, name: &str, version: &str) -> Self {
        let config = Blob::inline(
            HELM_CONFIG,
            serde_json::to_vec(&json!({
                "apiVersion": "v2",
                "name": name,
                "version": version,
                "description": "A Helm chart for acr-import tests",
                "type": "application",
                "appVersion": "1.16.0",
            }))
            .expect("serialize chart config"),
        );
        let chart = Blob::generated(HELM_CHART, mix(seed, 7), 3_777);
        let manifest = json!({
            "schemaVersion": 2,
            "config": config.descriptor(),
            "layers": [chart.descriptor()],
            "annotations": {
                "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
                "org.opencontainers.image.description": "A Helm chart for acr-import tests",
                "org.opencontainers.image.title": name,
                "org.opencontainers.image.version": version,
            },
        });
        Self {
            top: Manifest::new(OCI_MANIFEST, &manifest, None),
            children: Vec::new(),
            blobs: vec![config, chart],
        }
    }

    /// An OCI artifact: `artifactType`, the empty config (`{}`) and one layer of
    /// `layer_type`.
    pub fn artifact(seed: u64, artifact_type: &str, layer_type: &str) -> Self {
        let config = Blob::inline(OCI_EMPTY, &b"{}"[..]);
        let payload = serde_json::to_vec(&json!({
            "spdxVersion": "SPDX-2.3",
            "name": format!("acr-import-tests-{seed}"),
            "packages": [],
        }))
        .expect("serialize artifact payload");
        let layer = Blob::inline(layer_type, payload);
        let mut config_desc = config.descriptor();
        config_desc["data"] = json!("e30=");
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": config_desc,
            "layers": [layer.descriptor()],
            "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
        });
        Self {
            top: Manifest::new(OCI_MANIFEST, &manifest, None),
            children: Vec::new(),
            blobs: vec![config, layer],
        }
    }

    /// A Docker v2s2 image whose first layer is a foreign (non-distributable) layer with
    /// `urls: [foreign_url]`, followed by a normal layer of `layer_size` bytes. The foreign
    /// blob is returned apart: it is not part of `blobs` and never pushed anywhere.
    pub fn docker_with_foreign_layer(
        seed: u64,
        foreign_url: &str,
        layer_size: u64,
    ) -> (Self, Blob) {
        let foreign = Blob::generated(DOCKER_FOREIGN_LAYER, mix(seed, 99), 4_321);
        let layer = Blob::generated(DOCKER_LAYER, mix(seed, 100), layer_size);
        let config = Blob::inline(
            DOCKER_CONFIG,
            serde_json::to_vec(&json!({
                "architecture": "amd64",
                "os": "windows",
                "os.version": "10.0.17763.5830",
                "rootfs": {"type": "layers", "diff_ids": [foreign.digest, layer.digest]},
                "created": "2024-01-01T00:00:00Z",
            }))
            .expect("serialize config"),
        );
        let mut foreign_desc = foreign.descriptor();
        foreign_desc["urls"] = json!([foreign_url]);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config.descriptor(),
            "layers": [foreign_desc, layer.descriptor()],
        });
        (
            Self {
                top: Manifest::new(DOCKER_MANIFEST, &manifest, None),
                children: Vec::new(),
                blobs: vec![config, layer],
            },
            foreign,
        )
    }

    /// An OCI index whose only entry is another OCI index of two platform manifests
    /// (amd64, arm64). `children` lists the leaf manifests first, then the inner index, so
    /// [`OciClient::push_image`](crate::oci::OciClient::push_image) pushes bottom-up.
    pub fn nested_index(seed: u64, layer_sizes: &[u64]) -> Self {
        let inner = Self::index(
            mix(seed, 5),
            Format::Oci,
            &[Platform::amd64(), Platform::arm64()],
            layer_sizes,
        );
        let outer = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [inner.top.descriptor_json()],
            "annotations": {"org.opencontainers.image.ref.name": format!("nested-{seed}")},
        });
        let mut children = inner.children.clone();
        children.push(inner.top.clone());
        Self {
            top: Manifest::new(OCI_INDEX, &outer, None),
            children,
            blobs: inner.blobs,
        }
    }

    /// An OCI index of `n` tiny single-layer platform images (`linux/arch<i>`).
    pub fn wide_index(seed: u64, n: usize) -> Self {
        let platforms: Vec<Platform> = (0..n)
            .map(|i| Platform::new("linux", &format!("arch{i}"), None))
            .collect();
        Self::index(seed, Format::Oci, &platforms, &[64])
    }
}

fn mix(seed: u64, salt: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_chunk_independent() {
        let mut whole = vec![0u8; 3 * CHUNK + 5];
        ByteGen::new(7).fill(&mut whole);
        let mut pieces = Vec::new();
        ByteGen::for_each_chunk(7, whole.len() as u64, |c| {
            pieces.extend_from_slice(c);
            true
        });
        assert_eq!(whole, pieces);
        let a = TestImage::three_platform(1);
        let b = TestImage::three_platform(1);
        let c = TestImage::three_platform(2);
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
        assert_eq!(a.children.len(), 3);
        assert_eq!(a.blobs.len(), 9);
    }

    #[test]
    fn generated_blob_digest_matches_stream() {
        let blob = Blob::generated(OCI_LAYER, 3, 9 << 20);
        assert!(blob.bytes().is_none());
        let chunks: Vec<Bytes> =
            futures::executor::block_on(futures::StreamExt::collect::<Vec<_>>(blob.stream()))
                .into_iter()
                .map(|r| r.expect("chunk"))
                .collect();
        let mut h = Sha256::new();
        let mut n = 0;
        for c in &chunks {
            h.update(c);
            n += c.len() as u64;
        }
        assert_eq!(n, blob.size);
        assert_eq!(h.finish(), blob.digest);
    }
}
