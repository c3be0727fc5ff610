//! What a request is: [`Kind`], from its method and path.

use axum::http::Method;

/// What a request is, from its method and path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    ManifestGet,
    ManifestHead,
    ManifestPut,
    /// DELETE (or anything else) on `/v2/<name>/manifests/<ref>`.
    ManifestOther,
    BlobGet,
    BlobHead,
    /// DELETE (or anything else) on `/v2/<name>/blobs/<digest>`.
    BlobOther,
    UploadPost,
    UploadPatch,
    UploadPut,
    UploadGet,
    UploadDelete,
    /// Anything on a path ending in `/token`.
    Token,
    /// `/v2/`, tags lists, catalog, referrers, …
    Other,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Kind::ManifestGet,
        Kind::ManifestHead,
        Kind::ManifestPut,
        Kind::ManifestOther,
        Kind::BlobGet,
        Kind::BlobHead,
        Kind::BlobOther,
        Kind::UploadPost,
        Kind::UploadPatch,
        Kind::UploadPut,
        Kind::UploadGet,
        Kind::UploadDelete,
        Kind::Token,
        Kind::Other,
    ];

    /// Classifies a request by method and path (without the query).
    pub fn classify(method: &Method, path: &str) -> Kind {
        let path = path.split('?').next().unwrap_or(path);
        if path.trim_end_matches('/').ends_with("/token") {
            return Kind::Token;
        }
        if !path.starts_with("/v2/") {
            return Kind::Other;
        }
        if path.contains("/blobs/uploads") {
            return match *method {
                Method::POST => Kind::UploadPost,
                Method::PATCH => Kind::UploadPatch,
                Method::PUT => Kind::UploadPut,
                Method::GET | Method::HEAD => Kind::UploadGet,
                Method::DELETE => Kind::UploadDelete,
                _ => Kind::Other,
            };
        }
        if path.contains("/manifests/") {
            return match *method {
                Method::GET => Kind::ManifestGet,
                Method::HEAD => Kind::ManifestHead,
                Method::PUT => Kind::ManifestPut,
                _ => Kind::ManifestOther,
            };
        }
        if path.contains("/blobs/") {
            return match *method {
                Method::GET => Kind::BlobGet,
                Method::HEAD => Kind::BlobHead,
                _ => Kind::BlobOther,
            };
        }
        Kind::Other
    }

    pub fn is_upload(self) -> bool {
        matches!(
            self,
            Kind::UploadPost
                | Kind::UploadPatch
                | Kind::UploadPut
                | Kind::UploadGet
                | Kind::UploadDelete
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_requests() {
        let c = |m: &str, p: &str| Kind::classify(&Method::from_bytes(m.as_bytes()).unwrap(), p);
        assert_eq!(c("GET", "/v2/a/b/manifests/v1"), Kind::ManifestGet);
        assert_eq!(c("HEAD", "/v2/a/manifests/sha256:00"), Kind::ManifestHead);
        assert_eq!(c("PUT", "/v2/a/manifests/v1"), Kind::ManifestPut);
        assert_eq!(c("GET", "/v2/a/blobs/sha256:00"), Kind::BlobGet);
        assert_eq!(c("HEAD", "/v2/a/blobs/sha256:00"), Kind::BlobHead);
        assert_eq!(c("POST", "/v2/a/blobs/uploads/"), Kind::UploadPost);
        assert_eq!(c("PATCH", "/v2/a/blobs/uploads/u-1"), Kind::UploadPatch);
        assert_eq!(c("PUT", "/v2/a/blobs/uploads/u-1"), Kind::UploadPut);
        assert_eq!(c("GET", "/v2/a/blobs/uploads/u-1"), Kind::UploadGet);
        assert_eq!(c("DELETE", "/v2/a/blobs/uploads/u-1"), Kind::UploadDelete);
        assert_eq!(c("GET", "/token"), Kind::Token);
        assert_eq!(c("POST", "/token"), Kind::Token);
        assert_eq!(c("GET", "/v2/"), Kind::Other);
        assert_eq!(c("GET", "/v2/a/tags/list"), Kind::Other);
        // A repository named "manifests" or "blobs" is still classified by the last segment.
        assert_eq!(c("GET", "/v2/x/blobs/sha256:1"), Kind::BlobGet);
    }
}
