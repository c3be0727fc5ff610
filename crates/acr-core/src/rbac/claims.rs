//! ARM bearer tokens: accepted audiences and the claims the emulator reads.

use super::*;

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// The audiences ARM accepts, in the order its error message lists them.
pub const ARM_AUDIENCES: &[&str] = &[
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
];

/// The claims of an Entra ID access token that authorization needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Object id of the principal (user, service principal, managed identity).
    pub oid: String,
    /// Tenant id.
    pub tid: String,
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Application (client) id, v1 tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// Application (client) id, v2 tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    /// User principal name (users only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    /// Display sign-in name, v1 tokens (users only; guests have it without `upn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

impl Claims {
    /// The application (client) id: `appid`, else `azp`.
    pub fn application_id(&self) -> Option<&str> {
        self.appid.as_deref().or(self.azp.as_deref())
    }

    /// What ARM prints as "The client '…'": the user principal name for a user (`upn`, else
    /// `unique_name`), otherwise the object id — ARM shows a service principal's or managed
    /// identity's object id twice, not its application id.
    pub fn client(&self) -> String {
        [self.upn.as_deref(), self.unique_name.as_deref()]
            .into_iter()
            .flatten()
            .find(|s| !s.trim().is_empty())
            .unwrap_or(&self.oid)
            .to_owned()
    }

    /// Whether the token has expired at `now` (seconds since the epoch).
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.exp <= now
    }

    /// ARM's audience check: `aud` must be exactly one of [`ARM_AUDIENCES`].
    pub fn check_arm_audience(&self) -> Result<(), TokenError> {
        if ARM_AUDIENCES.contains(&self.aud.as_str()) {
            Ok(())
        } else {
            Err(TokenError::WrongAudience(self.aud.clone()))
        }
    }
}

/// Why a bearer token was refused (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the token has {0} dot-separated segment(s); a JWT has three (header.payload.signature)"
    )]
    Segments(usize),
    #[error("the JWT {0} is not base64url")]
    Base64(&'static str),
    #[error("the JWT {part} is not a JSON object: {reason}")]
    Json { part: &'static str, reason: String },
    #[error("the token has no '{0}' claim")]
    MissingClaim(&'static str),
    #[error("the token's claims are invalid: {0}")]
    InvalidClaims(String),
    #[error("the token's audience '{0}' is not Azure Resource Manager")]
    WrongAudience(String),
}

impl TokenError {
    /// The HTTP status ARM answers with.
    pub const STATUS: u16 = 401;

    /// ARM's error code for this refusal.
    pub fn arm_code(&self) -> &'static str {
        match self {
            Self::WrongAudience(_) => "InvalidAuthenticationTokenAudience",
            _ => "InvalidAuthenticationToken",
        }
    }

    /// ARM's message for this refusal. Missing object id: Azure/azure-sdk-for-java#1714; wrong
    /// audience: JetBrains/azure-tools-for-intellij#16; anything else: "The access token is
    /// invalid." (Azure/azure-powershell#27882).
    pub fn arm_message(&self) -> String {
        match self {
            Self::MissingClaim("oid") => "The received access token is not valid: at least one of the claims 'puid' or 'altsecid' or 'oid' should be present. If you are accessing as application please make sure service principal is properly created in the tenant.".to_owned(),
            Self::WrongAudience(aud) => format!(
                "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences {}.",
                ARM_AUDIENCES
                    .iter()
                    .map(|a| format!("'{a}'"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            _ => "The access token is invalid.".to_owned(),
        }
    }
}

/// base64url, with or without padding.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn decode_part(
    text: &str,
    part: &'static str,
) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
    let bytes = B64URL.decode(text).map_err(|_| TokenError::Base64(part))?;
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(TokenError::Json {
            part,
            reason: "not an object".into(),
        }),
        Err(e) => Err(TokenError::Json {
            part,
            reason: e.to_string(),
        }),
    }
}

/// Decodes the claims of a JWT **without verifying its signature** (the emulator trusts the
/// token's issuer by configuration). `token` is the bare token, without `Bearer `.
///
/// Requires three segments, a JSON-object header and payload, and the claims `oid`, `tid`, `aud`
/// and `exp` (`oid` non-empty).
pub fn decode_jwt_claims(token: &str) -> Result<Claims, TokenError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(TokenError::Segments(parts.len()));
    }
    decode_part(parts[0], "header")?;
    let payload = decode_part(parts[1], "payload")?;
    for claim in ["oid", "tid", "aud", "exp"] {
        if payload.get(claim).is_none_or(|v| v.is_null()) {
            return Err(TokenError::MissingClaim(claim));
        }
    }
    let claims: Claims = serde_json::from_value(serde_json::Value::Object(payload))
        .map_err(|e| TokenError::InvalidClaims(e.to_string()))?;
    if claims.oid.trim().is_empty() {
        return Err(TokenError::MissingClaim("oid"));
    }
    Ok(claims)
}
