//! The tokens this service signs: what the managed-identity endpoint mints (`cloud`) and what
//! `--auth arm-rbac` with `--token-key-file` accepts (`caller`). One HS256 key, one claim set.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The identity tokens are minted for and signed with.
#[derive(Clone)]
pub struct IdentityConfig {
    /// `oid` of the system-assigned identity (a request may name another with `object_id`).
    pub object_id: String,
    /// HS256 key of the tokens.
    pub signing_key: std::sync::Arc<Vec<u8>>,
    pub token_lifetime: Duration,
}

impl std::fmt::Debug for IdentityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityConfig")
            .field("object_id", &self.object_id)
            .field("signing_key", &"***")
            .field("token_lifetime", &self.token_lifetime)
            .finish()
    }
}

/// Claims of the tokens we mint (and read back in `--auth arm-rbac`).
#[derive(Debug, Serialize, Deserialize)]
struct MintedClaims {
    aud: String,
    iss: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    oid: String,
    sub: String,
    tid: String,
    appid: String,
    idtyp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    xms_mirid: Option<String>,
}

/// Who a token is minted for.
#[derive(Debug)]
pub(crate) struct TokenRequest<'a> {
    /// `aud`: the resource the token is for.
    pub resource: &'a str,
    /// `tid`.
    pub tenant_id: &'a str,
    /// `oid` and `sub`.
    pub oid: &'a str,
    /// `appid`.
    pub client_id: &'a str,
    /// `xms_mirid`: the resource id of a user-assigned identity.
    pub mi_res_id: Option<&'a str>,
}

/// A signed token and its lifetime in epoch seconds.
#[derive(Debug)]
pub(crate) struct Minted {
    pub token: String,
    pub not_before: u64,
    pub expires_on: u64,
}

/// Signs an app token for `req` with the identity's key, valid from now for its lifetime.
pub(crate) fn mint(
    identity: &IdentityConfig,
    req: &TokenRequest<'_>,
) -> Result<Minted, jsonwebtoken::errors::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let exp = now + identity.token_lifetime.as_secs();
    let claims = MintedClaims {
        aud: req.resource.to_owned(),
        iss: format!("https://sts.windows.net/{}/", req.tenant_id),
        iat: now,
        nbf: now.saturating_sub(300),
        exp,
        oid: req.oid.to_owned(),
        sub: req.oid.to_owned(),
        tid: req.tenant_id.to_owned(),
        appid: req.client_id.to_owned(),
        idtyp: "app".into(),
        xms_mirid: req.mi_res_id.map(str::to_owned),
    };
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&identity.signing_key),
    )?;
    Ok(Minted {
        token,
        not_before: claims.nbf,
        expires_on: exp,
    })
}

/// Verifies a token signed with our key (signature, expiry) and returns its `oid`.
pub fn verify_minted(identity: &IdentityConfig, token: &str) -> Result<String, String> {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    /// What verification needs of the claims (the rest is read by `rbac::decode_jwt_claims`).
    #[derive(Deserialize)]
    struct Signed {
        oid: String,
    }
    jsonwebtoken::decode::<Signed>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(&identity.signing_key),
        &validation,
    )
    .map(|d| d.claims.oid)
    .map_err(|e| e.to_string())
}
