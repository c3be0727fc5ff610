//! Content digests: parsing (`algorithm:encoded`), the two supported algorithms and their hashers.

use std::fmt;

use sha2::{Digest as _, Sha256, Sha512};

/// A supported digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub(crate) fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub(crate) fn digest_of(self, bytes: &[u8]) -> Digest {
        let mut h = self.hasher();
        h.update(bytes);
        h.finish()
    }
}

/// A parsed, validated digest of a supported algorithm; `hex` is lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Digest {
    pub(crate) algorithm: Algorithm,
    pub(crate) hex: String,
}

/// Why a digest string was refused. Both are answered 400 `DIGEST_INVALID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DigestError {
    /// Not of the form `algorithm:encoded` of the OCI grammar, or the wrong length for its algorithm.
    Malformed,
    /// Well formed, but an algorithm this registry does not store (only sha256 and sha512).
    Unsupported,
}

impl DigestError {
    pub(crate) fn message(&self) -> &'static str {
        match self {
            DigestError::Malformed => "invalid digest format",
            DigestError::Unsupported => "unsupported digest algorithm (sha256 and sha512 are)",
        }
    }
}

impl Digest {
    /// Parses `algorithm:encoded` per the OCI image-spec grammar, then requires a supported
    /// algorithm with its exact lowercase hex length.
    pub(crate) fn parse(s: &str) -> Result<Digest, DigestError> {
        let (algo, encoded) = s.split_once(':').ok_or(DigestError::Malformed)?;
        if !valid_algorithm_component(algo) || encoded.is_empty() {
            return Err(DigestError::Malformed);
        }
        if !encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-')
        {
            return Err(DigestError::Malformed);
        }
        let algorithm = match algo {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(DigestError::Unsupported),
        };
        if encoded.len() != algorithm.hex_len()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Malformed);
        }
        Ok(Digest {
            algorithm,
            hex: encoded.to_owned(),
        })
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

/// A running hash of one algorithm. Cloneable, so a caller can keep a checkpoint and roll back.
#[derive(Clone)]
pub(crate) enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub(crate) fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest {
                algorithm: Algorithm::Sha256,
                hex: hex::encode(h.finalize()),
            },
            Hasher::Sha512(h) => Digest {
                algorithm: Algorithm::Sha512,
                hex: hex::encode(h.finalize()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_digests() {
        let d = Digest::parse(&format!("sha256:{}", "a".repeat(64))).expect("sha256");
        assert_eq!(d.algorithm, Algorithm::Sha256);
        let d = Digest::parse(&format!("sha512:{}", "0".repeat(128))).expect("sha512");
        assert_eq!(d.algorithm, Algorithm::Sha512);
        assert_eq!(d.to_string(), format!("sha512:{}", "0".repeat(128)));
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
            assert_eq!(Digest::parse(bad), Err(DigestError::Malformed), "{bad:?}");
        }
        assert_eq!(
            Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e"),
            Err(DigestError::Unsupported)
        );
        assert_eq!(
            Digest::parse("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564"),
            Err(DigestError::Unsupported)
        );
    }

    #[test]
    fn digest_of_matches_known_values() {
        assert_eq!(
            Algorithm::Sha256.digest_of(b"{}").to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(
            Algorithm::Sha512.digest_of(b"").hex,
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
    }
}
