//! The OCI distribution grammar, in one place: repository names, tags and digests (validated
//! by hand, without a regex engine), and the running hashers of the two digest algorithms
//! every part of acr-import verifies (sha256, sha512).
//!
//! Used by the ARM model (`acr-core::reference`, which adds user-facing messages), the copy
//! engine (`acr-oci`) and the built-in registry (`acr-registry`, which must not depend on ARM
//! code). Why not `oci-spec`'s `Digest`: it accepts algorithms we cannot verify (sha384 and
//! registered ones) without telling "malformed" from "unsupported" (the registry answers both
//! `DIGEST_INVALID` but with different messages), has no streaming hasher, and brings a
//! builder/derive dependency tree for two small types.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// Longest repository name accepted (distribution's limit), with any prefix.
pub const MAX_REPOSITORY_LEN: usize = 255;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most
/// [`MAX_REPOSITORY_LEN`] characters.
pub fn valid_repository(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_REPOSITORY_LEN && name.split('/').all(valid_component)
}

/// One path component of a repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        // a run of [a-z0-9]+
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // a separator: '.', '_', '__' or '-+'
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
}

/// A digest algorithm we can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// A running hash of this algorithm.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// The digest of `bytes`.
    pub fn digest_of(self, bytes: &[u8]) -> Digest {
        let mut h = self.hasher();
        h.update(bytes);
        h.finish()
    }
}

/// A parsed, validated digest of a supported algorithm (`hex` lowercase).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestErrorKind {
    /// Not `algorithm:encoded` of the OCI grammar, or the wrong length for its algorithm.
    Malformed,
    /// Well formed, but an algorithm we cannot verify (only sha256 and sha512).
    Unsupported,
}

/// A refused digest string, with the (truncated) input for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestError {
    pub kind: DigestErrorKind,
    input: String,
    algorithm: Option<Algorithm>,
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, self.algorithm) {
            (DigestErrorKind::Unsupported, _) => write!(
                f,
                "'{}' is not a supported digest: the algorithm must be sha256 or sha512",
                self.input
            ),
            (DigestErrorKind::Malformed, Some(a)) => write!(
                f,
                "'{}' is not a valid digest: a {} digest is {} lowercase hex digits",
                self.input,
                a.as_str(),
                a.hex_len()
            ),
            (DigestErrorKind::Malformed, None) => write!(
                f,
                "'{}' is not a valid digest: expected 'sha256:<64 hex digits>'",
                self.input
            ),
        }
    }
}

impl std::error::Error for DigestError {}

impl From<DigestError> for String {
    fn from(e: DigestError) -> String {
        e.to_string()
    }
}

/// The first 200 characters of `s` (messages that quote user input stay short).
pub fn truncate(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

impl Digest {
    /// Parses `algorithm:encoded` per the OCI image-spec grammar, then requires a supported
    /// algorithm with its exact lowercase hex length.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let err = |kind, algorithm| DigestError {
            kind,
            input: truncate(s),
            algorithm,
        };
        let (algo, encoded) = s
            .split_once(':')
            .ok_or_else(|| err(DigestErrorKind::Malformed, None))?;
        if !valid_algorithm_component(algo)
            || encoded.is_empty()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-')
        {
            return Err(err(DigestErrorKind::Malformed, None));
        }
        let algorithm = match algo {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(err(DigestErrorKind::Unsupported, None)),
        };
        if encoded.len() != algorithm.hex_len()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err(DigestErrorKind::Malformed, Some(algorithm)));
        }
        Ok(Digest {
            algorithm,
            hex: encoded.to_owned(),
        })
    }

    /// A digest from an algorithm and raw hash bytes.
    pub fn from_raw(algorithm: Algorithm, raw: &[u8]) -> Self {
        Self {
            algorithm,
            hex: hex::encode(raw),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*`
fn valid_algorithm_component(s: &str) -> bool {
    let mut prev_sep = true;
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => prev_sep = false,
            b'+' | b'.' | b'_' | b'-' if !prev_sep => prev_sep = true,
            _ => return false,
        }
    }
    !prev_sep
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A running hash of one algorithm. Cloneable, so a caller can keep a checkpoint and roll back.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Self {
        algorithm.hasher()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest::from_raw(Algorithm::Sha256, &h.finalize()),
            Hasher::Sha512(h) => Digest::from_raw(Algorithm::Sha512, &h.finalize()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let d = Digest::parse(&format!("sha256:{}", "a".repeat(64))).expect("sha256");
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        let d = Digest::parse(&format!("sha512:{}", "0".repeat(128))).expect("sha512");
        assert_eq!(d.to_string(), format!("sha512:{}", "0".repeat(128)));
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:baddigeststring",
            "SHA256:ab",
        ] {
            assert_eq!(
                Digest::parse(bad).map_err(|e| e.kind),
                Err(DigestErrorKind::Malformed),
                "{bad}"
            );
        }
        let e = Digest::parse(&format!("sha384:{}", "a".repeat(96))).expect_err("sha384");
        assert_eq!(e.kind, DigestErrorKind::Unsupported);
        assert!(e.to_string().contains("sha256 or sha512"), "{e}");
        let e = Digest::parse("sha256:abc").expect_err("short");
        assert!(e.to_string().contains("64 lowercase hex digits"), "{e}");
    }

    #[test]
    fn hashers_agree_with_known_values() {
        assert_eq!(
            Algorithm::Sha256.digest_of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"a");
        let checkpoint = h.clone();
        h.update(b"b");
        assert_eq!(h.finish(), Algorithm::Sha512.digest_of(b"ab"));
        assert_eq!(checkpoint.finish(), Algorithm::Sha512.digest_of(b"a"));
    }

    #[test]
    fn names_and_tags() {
        for ok in ["a", "library/ubuntu", "a.b", "a__b", "a---b", "0"] {
            assert!(valid_repository(ok), "{ok}");
        }
        for bad in ["", "A", "a/", "/a", "a..b", "a___b", "a-", &"a".repeat(256)] {
            assert!(!valid_repository(bad), "{bad}");
        }
        for ok in ["latest", "_x", "v1.2-rc_3", &"t".repeat(128)] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a:b", &"t".repeat(129)] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }

    #[test]
    fn repository_grammar() {
        for ok in [
            "a",
            "library/ubuntu",
            "myreg/team/app",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "conformance/repo1",
            "0",
        ] {
            assert!(valid_repository(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "a..b",
            "a___b",
            "a_",
            "-a",
            "a.",
            "a/../b",
            "a/./b",
            "a:b",
            "a b",
            "_catalog",
            "a/_layers",
        ] {
            assert!(!valid_repository(bad), "{bad}");
        }
        assert!(!valid_repository(&"a".repeat(256)));
    }

    #[test]
    fn tag_grammar() {
        for ok in ["latest", "v1.0", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in ["", ".a", "-a", "a:b", "a/b", &"a".repeat(129), ".."] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }

    #[test]
    fn refuses_malformed_and_unsupported() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:baddigeststring",
            "sha256:totallywrong",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}", "a".repeat(63)),
            &format!("sha512:{}", "a".repeat(64)),
            "SHA256:abc",
            "sha256+:abc",
            "sha256:ab/cd",
        ] {
            assert_eq!(
                Digest::parse(bad).map_err(|e| e.kind),
                Err(DigestErrorKind::Malformed),
                "{bad:?}"
            );
        }
        for unsupported in [
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
        ] {
            assert_eq!(
                Digest::parse(unsupported).map_err(|e| e.kind),
                Err(DigestErrorKind::Unsupported)
            );
        }
    }

    #[test]
    fn digest_of_matches_known_values() {
        assert_eq!(
            Algorithm::Sha256.digest_of(b"{}").to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(
            Algorithm::Sha512.digest_of(b"").hex(),
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
    }
}
