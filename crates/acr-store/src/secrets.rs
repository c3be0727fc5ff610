//! Source credentials at rest: AES-256-GCM when a key is configured (`--credentials-key-file`).
//!
//! Format of the `operations.credentials` jsonb: `{"v":1,"alg":"A256GCM","nonce":<b64>,"ct":<b64>}`
//! with a random 96-bit nonce per record and the operation id as associated data (a ciphertext
//! copied to another row does not decrypt). Without a key the credentials are stored as plain
//! `{"username","password"}` (the pre-existing format, still read).

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::operations::StoredCredentials;

/// The AES-256 key credentials are encrypted with.
#[derive(Clone)]
pub struct CredentialsKey(Key<Aes256Gcm>);

impl std::fmt::Debug for CredentialsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialsKey([redacted])")
    }
}

impl CredentialsKey {
    /// A key file's content: 32 raw bytes, or 64 hex characters (surrounding whitespace ignored).
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() == 32 {
            return Ok(Self(*Key::<Aes256Gcm>::from_slice(bytes)));
        }
        let text = std::str::from_utf8(bytes)
            .map(str::trim)
            .map_err(|_| "the key must be 32 raw bytes or 64 hex characters".to_owned())?;
        if text.len() != 64 {
            return Err(format!(
                "the key must be 32 raw bytes or 64 hex characters (found {} bytes)",
                bytes.len()
            ));
        }
        let raw =
            hex::decode(text).map_err(|_| "the 64 characters are not hexadecimal".to_owned())?;
        Ok(Self(*Key::<Aes256Gcm>::from_slice(&raw)))
    }

    /// Encrypts `creds` for operation `id`.
    pub fn seal(&self, id: &str, creds: &StoredCredentials) -> Result<Value, String> {
        let cipher = Aes256Gcm::new(&self.0);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let plain = serde_json::to_vec(creds).map_err(|e| e.to_string())?;
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| "encryption failed".to_owned())?;
        Ok(json!({"v": 1, "alg": "A256GCM", "nonce": B64.encode(nonce), "ct": B64.encode(ct)}))
    }

    fn open(&self, id: &str, nonce: &[u8], ct: &[u8]) -> Option<StoredCredentials> {
        if nonce.len() != 12 {
            return None;
        }
        let cipher = Aes256Gcm::new(&self.0);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: id.as_bytes(),
                },
            )
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }
}

/// Reads the stored credentials of operation `id`; the error is a message for the operation.
pub fn open_stored(
    key: Option<&CredentialsKey>,
    id: &str,
    stored: Value,
) -> Result<StoredCredentials, String> {
    if stored.get("alg").is_none() {
        return serde_json::from_value(stored)
            .map_err(|_| "the stored source credentials are unreadable".to_owned());
    }
    let version = stored.get("v").and_then(Value::as_u64);
    let alg = stored.get("alg").and_then(Value::as_str);
    if version != Some(1) || alg != Some("A256GCM") {
        return Err(format!(
            "the stored source credentials use an unknown format (v={version:?}, alg={alg:?})"
        ));
    }
    let Some(key) = key else {
        return Err("the source credentials were stored encrypted, and this service has no key to decrypt them: start it with the same --credentials-key-file as the service that accepted the import".to_owned());
    };
    let field = |name: &str| {
        stored
            .get(name)
            .and_then(Value::as_str)
            .and_then(|s| B64.decode(s).ok())
    };
    let (Some(nonce), Some(ct)) = (field("nonce"), field("ct")) else {
        return Err("the stored encrypted source credentials are malformed".to_owned());
    };
    key.open(id, &nonce, &ct).ok_or_else(|| {
        "the stored source credentials cannot be decrypted with this service's --credentials-key-file (a different key encrypted them)".to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> StoredCredentials {
        StoredCredentials {
            username: Some("u".into()),
            password: "s3cret-pass".into(),
        }
    }

    #[test]
    fn round_trip_and_failures() {
        let k = CredentialsKey::from_file_bytes(&[7u8; 32]).expect("key");
        let sealed = k.seal("registries-1", &creds()).expect("seal");
        let text = sealed.to_string();
        assert!(!text.contains("s3cret-pass"), "{text}");
        assert_eq!(sealed["alg"], "A256GCM");
        let back = open_stored(Some(&k), "registries-1", sealed.clone()).expect("open");
        assert_eq!(back.password, "s3cret-pass");
        // Another row, another key, no key.
        assert!(open_stored(Some(&k), "registries-2", sealed.clone()).is_err());
        let other = CredentialsKey::from_file_bytes(&[8u8; 32]).expect("key");
        let e = open_stored(Some(&other), "registries-1", sealed.clone()).expect_err("wrong key");
        assert!(e.contains("different key"), "{e}");
        let e = open_stored(None, "registries-1", sealed).expect_err("no key");
        assert!(e.contains("--credentials-key-file"), "{e}");
        // Two seals of the same secret differ (random nonce).
        let a = k.seal("x", &creds()).expect("seal");
        let b = k.seal("x", &creds()).expect("seal");
        assert_ne!(a["nonce"], b["nonce"]);
    }

    #[test]
    fn plain_records_still_read() {
        let v = serde_json::to_value(creds()).expect("json");
        assert_eq!(
            open_stored(None, "x", v).expect("plain").password,
            "s3cret-pass"
        );
    }

    #[test]
    fn key_formats() {
        let hex = "00".repeat(32);
        assert!(CredentialsKey::from_file_bytes(hex.as_bytes()).is_ok());
        assert!(CredentialsKey::from_file_bytes(format!("{hex}\n").as_bytes()).is_ok());
        assert!(CredentialsKey::from_file_bytes(b"short").is_err());
        assert!(CredentialsKey::from_file_bytes("zz".repeat(32).as_bytes()).is_err());
    }
}
