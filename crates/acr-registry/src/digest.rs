//! Content digests and their hashers: the shared ones of `acr-grammar`, with the registry's
//! messages for refused digests.

pub(crate) use acr_grammar::{Algorithm, Digest, DigestError, DigestErrorKind, Hasher};

/// What the registry answers (400 `DIGEST_INVALID`) for a refused digest.
pub(crate) fn message(e: &DigestError) -> &'static str {
    match e.kind {
        DigestErrorKind::Malformed => "invalid digest format",
        DigestErrorKind::Unsupported => "unsupported digest algorithm (sha256 and sha512 are)",
    }
}
