//! The login servers' tokens: HS256 JWTs signed with a key every replica shares (kept in the
//! store, `service_secrets`), so a token minted by one replica works on all of them.
//!
//! - A **refresh token** (`/oauth2/exchange`; also the password `az acr login` hands to docker
//!   with the user `00000000-0000-0000-0000-000000000000`) names a principal and a login
//!   server and lives three hours, as ACR's do. Its payload segment never holds `-` or `_`:
//!   the Python data-plane SDK decodes it with the *standard* base64 alphabet to read `exp`.
//! - An **access token** (`/oauth2/token`) carries the granted access (`[{type,name,actions}]`,
//!   names as the client sees them) and lives `access_lifetime`.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Principal {
    /// An Entra identity (from an access token given to `/oauth2/exchange` or as a password).
    Entra { oid: String, tid: String },
    /// A registry's admin user; `generation` names the registry instance (its creation
    /// instant), so that a token minted before a registry was deleted and created again
    /// under the same name is worthless on the new one.
    Admin {
        registry: String,
        #[serde(default)]
        generation: String,
    },
    /// Nobody (anonymous pull).
    Anonymous,
}

/// One grant: `repository` + name + actions, or `registry` + `catalog` + `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefreshClaims {
    jti: String,
    sub: String,
    iss: String,
    aud: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    grant_type: String,
    principal: Principal,
    /// Filler that keeps the payload free of `-` and `_` (see the module doc).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pad: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub jti: String,
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub grant_type: String,
    pub principal: Principal,
    pub access: Vec<Grant>,
}

impl AccessClaims {
    /// Whether the token grants `action` on `name` (`*` grants every action).
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|g| {
            g.kind == kind && g.name == name && g.actions.iter().any(|a| a == action || a == "*")
        })
    }
}

const ISSUER: &str = "acr-import";
const REFRESH: &str = "refresh_token";
const ACCESS: &str = "access_token";

/// Mints and verifies the login servers' tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub refresh_lifetime: Duration,
    pub access_lifetime: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("key", &"***")
            .field("refresh_lifetime", &self.refresh_lifetime)
            .field("access_lifetime", &self.access_lifetime)
            .finish()
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn subject(p: &Principal) -> String {
    match p {
        Principal::Entra { oid, .. } => oid.clone(),
        Principal::Admin { registry, .. } => registry.clone(),
        Principal::Anonymous => "anonymous".into(),
    }
}

impl TokenKeys {
    pub fn new(key: &[u8], refresh_lifetime: Duration, access_lifetime: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            refresh_lifetime,
            access_lifetime,
        }
    }

    /// A refresh token for `principal` at login server `service`.
    pub fn refresh_token(&self, principal: &Principal, service: &str) -> String {
        let t = now();
        let mut claims = RefreshClaims {
            jti: uuid::Uuid::new_v4().to_string(),
            sub: subject(principal),
            iss: ISSUER.into(),
            aud: service.to_owned(),
            iat: t,
            nbf: t - 60,
            exp: t + secs(self.refresh_lifetime),
            grant_type: REFRESH.into(),
            principal: principal.clone(),
            pad: String::new(),
        };
        loop {
            let token = self.sign(&claims);
            let payload = token.split('.').nth(1).unwrap_or_default();
            if !payload.contains(['-', '_']) || claims.pad.len() > 64 {
                return token;
            }
            claims.pad.push('x');
        }
    }

    /// The principal of a refresh token of ours that is valid now (for `service`, when given).
    pub fn verify_refresh(&self, token: &str, service: Option<&str>) -> Option<Principal> {
        let claims: RefreshClaims = self.verify(token)?;
        let right_service = service.is_none_or(|s| s.eq_ignore_ascii_case(&claims.aud));
        (claims.grant_type == REFRESH && right_service).then_some(claims.principal)
    }

    /// An access token granting `access` to `principal` at `service`; its lifetime in seconds.
    pub fn access_token(
        &self,
        principal: &Principal,
        service: &str,
        access: Vec<Grant>,
    ) -> (String, u64) {
        let t = now();
        let claims = AccessClaims {
            jti: uuid::Uuid::new_v4().to_string(),
            sub: subject(principal),
            iss: ISSUER.into(),
            aud: service.to_owned(),
            iat: t,
            nbf: t - 60,
            exp: t + secs(self.access_lifetime),
            grant_type: ACCESS.into(),
            principal: principal.clone(),
            access,
        };
        (self.sign(&claims), self.access_lifetime.as_secs())
    }

    /// The claims of an access token of ours that is valid now.
    pub fn verify_access(&self, token: &str) -> Option<AccessClaims> {
        let claims: AccessClaims = self.verify(token)?;
        (claims.grant_type == ACCESS).then_some(claims)
    }

    fn sign<T: Serialize>(&self, claims: &T) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .unwrap_or_default()
    }

    fn verify<T: for<'de> Deserialize<'de>>(&self, token: &str) -> Option<T> {
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_aud = false;
        v.set_issuer(&[ISSUER]);
        v.set_required_spec_claims(&["exp", "iss"]);
        jsonwebtoken::decode::<T>(token.trim(), &self.decoding, &v)
            .ok()
            .map(|d| d.claims)
    }
}

/// The claims of any JWT, unverified (an Entra access token in `--auth none`).
pub fn peek_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let payload = token.trim().split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            &[7; 32],
            Duration::from_secs(10800),
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn refresh_tokens_round_trip_and_decode_with_the_standard_alphabet() {
        let k = keys();
        for i in 0..200 {
            let p = Principal::Entra {
                oid: format!("{i:08}-aaaa-bbbb-cccc-{i:012}"),
                tid: "t".into(),
            };
            let t = k.refresh_token(&p, "myregistry.azurecr.io");
            let payload = t.split('.').nth(1).expect("payload");
            assert!(!payload.contains(['-', '_']), "{payload}");
            // What the Python SDK does: the standard alphabet (padded).
            let padded = format!("{payload}{}", "=".repeat((4 - payload.len() % 4) % 4));
            let decoded = STANDARD.decode(padded).expect("standard base64");
            let json: serde_json::Value = serde_json::from_slice(&decoded).expect("json");
            assert!(json["exp"].as_i64().is_some());
            assert_eq!(
                k.verify_refresh(&t, Some("MyRegistry.azurecr.io")),
                Some(p.clone())
            );
            assert_eq!(k.verify_refresh(&t, Some("other.azurecr.io")), None);
            assert!(
                k.verify_access(&t).is_none(),
                "a refresh token is no access token"
            );
        }
        let other = TokenKeys::new(&[8; 32], Duration::from_secs(60), Duration::from_secs(60));
        let t = k.refresh_token(&Principal::Anonymous, "s");
        assert!(other.verify_refresh(&t, None).is_none(), "another key");
    }

    #[test]
    fn access_tokens_carry_their_grants() {
        let k = keys();
        let (t, ttl) = k.access_token(
            &Principal::Admin {
                registry: "myreg".into(),
                generation: "2026-12-06T00:00:00.000000Z".into(),
            },
            "myreg.azurecr.io",
            vec![Grant {
                kind: "repository".into(),
                name: "app".into(),
                actions: vec!["pull".into()],
            }],
        );
        assert_eq!(ttl, 3600);
        let c = k.verify_access(&t).expect("valid");
        assert!(c.allows("repository", "app", "pull"));
        assert!(!c.allows("repository", "app", "push"));
        assert!(!c.allows("repository", "other", "pull"));
        assert!(k.verify_refresh(&t, None).is_none());
        assert!(peek_claims(&t).is_some_and(|m| m["sub"] == "myreg"));
        assert!(peek_claims("garbage").is_none());
    }
}
