//! Who may do what in the built-in registry: the [`Authenticator`] the embedder supplies, the `Authorization` header of a
//! request, and HMAC-SHA256 signed Bearer tokens carrying the granted access and an expiry.
//!
//! A token is `base64url(claims JSON) "." base64url(HMAC-SHA256(key, first part))`; the key is
//! random per [`crate::Registry`], so tokens die with the process (clients fetch a new one on the
//! next 401). Tokens and passwords are never logged.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a caller may do to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read manifests, blobs, tags, referrers.
    Pull,
    /// Upload blobs (also mount), put manifests and tags.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// The name used in token scopes (`pull`, `push`, `delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    pub(crate) fn parse_list(s: &str) -> Vec<Action> {
        let mut out = Vec::new();
        for a in s.split(',').map(str::trim) {
            let add: &[Action] = match a {
                "pull" => &[Action::Pull],
                "push" => &[Action::Push],
                "delete" => &[Action::Delete],
                "*" => &[Action::Pull, Action::Push, Action::Delete],
                _ => &[],
            };
            for x in add {
                if !out.contains(x) {
                    out.push(*x);
                }
            }
        }
        out
    }
}

/// Decides Basic credentials, for the token endpoint and for `Authorization: Basic` on `/v2`.
///
/// - `repository: None, actions: []`: are these credentials valid at all (login, `/v2/` ping)?
/// - `repository: None, actions: [Pull]`: may they list the catalog?
/// - `repository: Some(name)`: may they do every one of `actions` on that repository? `name` is
///   the full name, with the login server's prefix (`myreg/app`).
pub trait Authenticator: Send + Sync + 'static {
    fn authorize<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
        repository: Option<&'a str>,
        actions: &'a [Action],
    ) -> BoxFuture<'a, bool>;

    /// Whether a token issued to `username` still counts (asked on every request that presents
    /// one): the access it was granted may have been withdrawn since (a deleted registry, an
    /// admin user turned off). Tokens always count unless the embedder says otherwise.
    fn still_valid<'a>(&'a self, username: &'a str) -> BoxFuture<'a, bool> {
        let _ = username;
        Box::pin(async { true })
    }
}

/// Who sent a request, from its `Authorization` header.
pub(crate) enum Caller {
    Anonymous,
    Basic {
        user: String,
        pass: String,
    },
    /// A Bearer token: its claims when the signature and expiry hold.
    Bearer(Option<Claims>),
    /// An `Authorization` header we cannot read.
    Malformed,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print credentials
        match self {
            Caller::Anonymous => f.write_str("Anonymous"),
            Caller::Basic { user, .. } => write!(f, "Basic({user})"),
            Caller::Bearer(c) => write!(f, "Bearer(valid={})", c.is_some()),
            Caller::Malformed => f.write_str("Malformed"),
        }
    }
}

fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(b64).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// One grant in a token: `repository` + name + actions, or `registry` + `catalog` + `*`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Grant {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) actions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) sub: String,
    pub(crate) iat: i64,
    pub(crate) exp: i64,
    pub(crate) access: Vec<Grant>,
}

impl Claims {
    pub(crate) fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|g| {
            g.kind == kind && g.name == name && g.actions.iter().any(|a| a == action || a == "*")
        })
    }
}

type HmacSha256 = Hmac<Sha256>;

pub(crate) struct Tokens {
    key: [u8; 32],
    lifetime: Duration,
}

impl Tokens {
    pub(crate) fn new(lifetime: Duration) -> Tokens {
        Tokens {
            key: rand::random(),
            lifetime,
        }
    }

    pub(crate) fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; 32 bytes cannot fail.
        match HmacSha256::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts any key length"),
        }
    }

    /// Signs claims for `sub` with `access`, valid from `now` (unix seconds) for the lifetime.
    pub(crate) fn mint(&self, sub: &str, access: Vec<Grant>, now: i64) -> String {
        let claims = Claims {
            sub: sub.to_owned(),
            iat: now,
            exp: now.saturating_add(i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX)),
            access,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// The claims of a token we signed that has not expired at `now`.
    pub(crate) fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        let (payload, sig) = token.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (claims.exp > now).then_some(claims)
    }

    pub(crate) fn caller(&self, headers: &HeaderMap, now: i64) -> Caller {
        let Some(v) = headers.get(http::header::AUTHORIZATION) else {
            return Caller::Anonymous;
        };
        let Ok(v) = v.to_str() else {
            return Caller::Malformed;
        };
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            Caller::Bearer(self.verify(rest.trim(), now))
        } else if scheme.eq_ignore_ascii_case("basic") {
            match decode_basic(rest.trim()) {
                Some((user, pass)) => Caller::Basic { user, pass },
                None => Caller::Malformed,
            }
        } else {
            Caller::Malformed
        }
    }
}

/// A requested scope `type:name:actions` (the name may itself hold `:`, e.g. a port).
pub(crate) fn parse_scope(s: &str) -> Option<(&str, &str, &str)> {
    let (kind, rest) = s.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some((kind, name, actions))
}

pub(crate) fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_tampering() {
        let t = Tokens::new(Duration::from_secs(60));
        let grant = Grant {
            kind: "repository".into(),
            name: "a/b".into(),
            actions: vec!["pull".into()],
        };
        let tok = t.mint("alice", vec![grant], 1000);
        let c = t.verify(&tok, 1001).expect("valid");
        assert!(c.allows("repository", "a/b", "pull"));
        assert!(!c.allows("repository", "a/b", "push"));
        assert!(!c.allows("repository", "a/c", "pull"));
        assert!(t.verify(&tok, 1060).is_none(), "expired");
        let (p, s) = tok.split_once('.').expect("dot");
        let forged = format!("{}A.{s}", p);
        assert!(t.verify(&forged, 1001).is_none());
        let other = Tokens::new(Duration::from_secs(60));
        assert!(other.verify(&tok, 1001).is_none(), "other key");
        assert!(t.verify("garbage", 1001).is_none());
    }

    #[test]
    fn scopes_and_actions() {
        assert_eq!(
            parse_scope("repository:a/b:pull,push"),
            Some(("repository", "a/b", "pull,push"))
        );
        assert_eq!(
            parse_scope("repository:host:5000/a:pull"),
            Some(("repository", "host:5000/a", "pull"))
        );
        assert_eq!(parse_scope("nonsense"), None);
        assert_eq!(
            Action::parse_list("*"),
            vec![Action::Pull, Action::Push, Action::Delete]
        );
        assert_eq!(
            Action::parse_list("push,pull,bogus"),
            vec![Action::Push, Action::Pull]
        );
    }
}
