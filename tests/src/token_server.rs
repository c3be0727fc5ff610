//! A Docker token server (the `auth.token` protocol of docker-registry) for tests.
//!
//! `GET /token?service=S&scope=repository:NAME:ACTIONS[&scope=…][&account=U]`:
//! - valid Basic credentials (the configured user/password): a token granting every
//!   requested action on every requested repository;
//! - no Authorization header (anonymous): `200` with a token whose `access` list is empty,
//!   like Docker Hub does for private repositories, so the registry then answers
//!   `401 insufficient_scope`;
//! - wrong credentials: `401` with a JSON error and no token.
//!
//! `POST /token` (form: `grant_type=refresh_token&refresh_token=…&service=…&scope=…&client_id=…`,
//! the OAuth2 flow of docker/distribution's `oauth.md`): when the refresh token is the one set
//! with [`TokenServer::set_refresh_token`], an `access_token` granting every requested scope;
//! otherwise `401 invalid_grant`. `grant_type=password` with the configured user/password
//! works too. POSTs are logged separately ([`TokenServer::post_log`]).
//!
//! Tokens are ES256 JWTs signed with a P-256 key generated per server; the registry trusts
//! it through `rootcertbundle` (a self-signed certificate of that key) and finds it by the
//! JWT header `kid` (the libtrust key id). Requests are counted so tests can assert that
//! tokens were fetched, and the lifetime (`expires_in`) can be changed at run time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::PublicKeyData;
use serde::Serialize;
use serde_json::json;

#[derive(Clone, Debug)]
pub struct TokenServerConfig {
    pub username: String,
    pub password: String,
    /// `aud` of the tokens; the registry's `auth.token.service`.
    pub service: String,
    /// `iss` of the tokens; the registry's `auth.token.issuer`.
    pub issuer: String,
    /// Token lifetime in seconds (`expires_in`, `exp - iat`).
    pub expires_in: u64,
}

impl Default for TokenServerConfig {
    fn default() -> Self {
        Self {
            username: "tokenuser".to_string(),
            password: "tokenpass".to_string(),
            service: "acr-test-registry".to_string(),
            issuer: "acr-test-token-issuer".to_string(),
            expires_in: 300,
        }
    }
}

/// One `access` entry of a token.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: String,
    access: &'a [Access],
}

/// One `POST /token` (OAuth2 form) as the server saw it.
#[derive(Clone, Debug)]
pub struct TokenPost {
    pub grant_type: Option<String>,
    pub refresh_token: Option<String>,
    pub service: Option<String>,
    pub scopes: Vec<String>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// Whether a token was issued.
    pub granted: bool,
}

/// What the server saw in one request (for assertions).
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub authorized: bool,
    pub anonymous: bool,
    pub scopes: Vec<String>,
    pub service: Option<String>,
    pub account: Option<String>,
}

struct Inner {
    config: TokenServerConfig,
    key: EncodingKey,
    kid: String,
    expires_in: AtomicU64,
    /// Seconds taken off `exp` (see [`TokenServer::set_exp_backdate`]).
    exp_backdate: AtomicU64,
    requests: AtomicUsize,
    authorized: AtomicUsize,
    log: Mutex<Vec<TokenRequest>>,
    refresh_token: Mutex<Option<String>>,
    posts: Mutex<Vec<TokenPost>>,
    issued: AtomicUsize,
    /// Every token value handed out (for tests that prove tokens never leak).
    issued_values: Mutex<Vec<String>>,
}

pub struct TokenServer {
    inner: Arc<Inner>,
    addr: SocketAddr,
    cert_path: PathBuf,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// libtrust's key id: base32 (RFC 4648, no padding) of the first 30 bytes of
/// sha256(DER SubjectPublicKeyInfo), in 12 groups of 4 characters joined by ':'.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, spki_der);
    let b32 = base32_nopad(&hash.as_ref()[..30]);
    b32.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join(":")
}

fn base32_nopad(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer: u64 = 0;
    let mut bits = 0;
    for &b in data {
        buffer = (buffer << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Parses `repository:NAME:ACTIONS` (NAME may not contain ':'; other types are kept as-is).
fn parse_scope(scope: &str) -> Option<Access> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some(Access {
        kind: kind.to_string(),
        name: name.to_string(),
        actions: actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

impl TokenServer {
    pub async fn start() -> Self {
        Self::start_with(TokenServerConfig::default()).await
    }

    pub async fn start_with(config: TokenServerConfig) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("acr-token-")
            .tempdir()
            .expect("temp dir");
        let key_pair =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let mut params = rcgen::CertificateParams::new(vec!["acr-test-token-server".to_string()])
            .expect("cert params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "acr-test-token-server");
        let cert = params.self_signed(&key_pair).expect("self-signed cert");
        let cert_path = dir.path().join("token-cert.pem");
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        let kid = libtrust_key_id(&key_pair.subject_public_key_info());
        let key = EncodingKey::from_ec_pem(key_pair.serialize_pem().as_bytes()).expect("EC key");
        let inner = Arc::new(Inner {
            expires_in: AtomicU64::new(config.expires_in),
            exp_backdate: AtomicU64::new(0),
            config,
            key,
            kid,
            requests: AtomicUsize::new(0),
            authorized: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            refresh_token: Mutex::new(None),
            posts: Mutex::new(Vec::new()),
            issued: AtomicUsize::new(0),
            issued_values: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/token", get(token_handler).post(token_post_handler))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind token server");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            inner,
            addr,
            cert_path,
            task,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:P/token`
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }
    pub fn service(&self) -> &str {
        &self.inner.config.service
    }
    pub fn issuer(&self) -> &str {
        &self.inner.config.issuer
    }
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }
    pub fn username(&self) -> &str {
        &self.inner.config.username
    }
    pub fn password(&self) -> &str {
        &self.inner.config.password
    }
    pub fn credentials(&self) -> crate::oci::Credentials {
        crate::oci::Credentials::new(self.username(), self.password())
    }
    /// Every request so far.
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }
    /// Requests that carried the right credentials.
    pub fn authorized_requests(&self) -> usize {
        self.inner.authorized.load(Ordering::SeqCst)
    }
    /// What each request asked for, in order.
    pub fn request_log(&self) -> Vec<TokenRequest> {
        self.inner.log.lock().expect("log lock").clone()
    }
    pub fn expires_in(&self) -> u64 {
        self.inner.expires_in.load(Ordering::SeqCst)
    }
    /// Changes the lifetime of tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.inner.expires_in.store(secs, Ordering::SeqCst);
    }
    /// Accepts `token` as a refresh token on `POST /token` from now on (None: none is).
    pub fn set_refresh_token(&self, token: Option<&str>) {
        *self.inner.refresh_token.lock().expect("refresh lock") = token.map(str::to_string);
    }
    /// Every `POST /token` so far, in order.
    pub fn post_log(&self) -> Vec<TokenPost> {
        self.inner.posts.lock().expect("posts lock").clone()
    }
    /// `POST /token` requests with `grant_type=refresh_token`.
    pub fn refresh_posts(&self) -> usize {
        self.post_log()
            .iter()
            .filter(|p| p.grant_type.as_deref() == Some("refresh_token"))
            .count()
    }
    /// Tokens handed out over HTTP (GET and POST, anonymous ones included).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.inner
            .issued_values
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    pub fn tokens_issued(&self) -> usize {
        self.inner.issued.load(Ordering::SeqCst)
    }

    /// Dates the `exp` claim of tokens issued from now on `secs` seconds earlier than
    /// `expires_in` says (the `expires_in` field is unchanged). docker-registry accepts tokens
    /// up to 60 s past `exp` (clock-skew leeway): with a backdate of 60 a token with
    /// `expires_in: 2` really stops working after about 2 s.
    pub fn set_exp_backdate(&self, secs: u64) {
        self.inner.exp_backdate.store(secs, Ordering::SeqCst);
    }

    /// Signs a token directly (no HTTP), e.g. for a test that needs a specific grant.
    pub fn mint(&self, subject: &str, access: &[Access]) -> String {
        mint(&self.inner, subject, access)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn mint(inner: &Inner, subject: &str, access: &[Access]) -> String {
    let now = chrono::Utc::now().timestamp();
    let expires_in = inner.expires_in.load(Ordering::SeqCst) as i64;
    let backdate = inner.exp_backdate.load(Ordering::SeqCst) as i64;
    let claims = Claims {
        iss: &inner.config.issuer,
        sub: subject,
        aud: &inner.config.service,
        exp: now + expires_in - backdate,
        nbf: (now - 10).min(now + expires_in - backdate - 1),
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        access,
    };
    let header = Header {
        alg: Algorithm::ES256,
        kid: Some(inner.kid.clone()),
        ..Header::default()
    };
    jsonwebtoken::encode(&header, &claims, &inner.key).expect("sign token")
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (u, p) = raw.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

async fn token_handler(
    State(inner): State<Arc<Inner>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    inner.requests.fetch_add(1, Ordering::SeqCst);
    let mut scopes = Vec::new();
    let mut service = None;
    let mut account = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "scope" => scopes.extend(v.split(' ').filter(|s| !s.is_empty()).map(str::to_string)),
            "service" => service = Some(v.into_owned()),
            "account" => account = Some(v.into_owned()),
            _ => {}
        }
    }
    let has_auth_header = headers.contains_key("authorization");
    let creds = basic_credentials(&headers);
    let authorized = matches!(&creds, Some((u, p)) if *u == inner.config.username && *p == inner.config.password);
    inner.log.lock().expect("log lock").push(TokenRequest {
        authorized,
        anonymous: !has_auth_header,
        scopes: scopes.clone(),
        service: service.clone(),
        account: account.clone(),
    });
    if has_auth_header && !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required", "detail": null}]})),
        )
            .into_response();
    }
    let (subject, access): (String, Vec<Access>) = if authorized {
        inner.authorized.fetch_add(1, Ordering::SeqCst);
        (
            inner.config.username.clone(),
            scopes.iter().filter_map(|s| parse_scope(s)).collect(),
        )
    } else {
        (String::new(), Vec::new())
    };
    let token = mint(&inner, &subject, &access);
    inner.issued.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut v) = inner.issued_values.lock() {
        v.push(token.clone());
    }
    let issued_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Json(json!({
        "token": token,
        "access_token": token,
        "expires_in": inner.expires_in.load(Ordering::SeqCst),
        "issued_at": issued_at,
    }))
    .into_response()
}

async fn token_post_handler(State(inner): State<Arc<Inner>>, body: axum::body::Bytes) -> Response {
    inner.requests.fetch_add(1, Ordering::SeqCst);
    let mut post = TokenPost {
        grant_type: None,
        refresh_token: None,
        service: None,
        scopes: Vec::new(),
        client_id: None,
        username: None,
        granted: false,
    };
    let mut password = None;
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "grant_type" => post.grant_type = Some(v.into_owned()),
            "refresh_token" => post.refresh_token = Some(v.into_owned()),
            "service" => post.service = Some(v.into_owned()),
            "scope" => post
                .scopes
                .extend(v.split(' ').filter(|s| !s.is_empty()).map(str::to_string)),
            "client_id" => post.client_id = Some(v.into_owned()),
            "username" => post.username = Some(v.into_owned()),
            "password" => password = Some(v.into_owned()),
            _ => {}
        }
    }
    let expected_refresh = inner.refresh_token.lock().expect("refresh lock").clone();
    post.granted = match post.grant_type.as_deref() {
        Some("refresh_token") => {
            expected_refresh.is_some() && post.refresh_token == expected_refresh
        }
        Some("password") => {
            post.username.as_deref() == Some(inner.config.username.as_str())
                && password.as_deref() == Some(inner.config.password.as_str())
        }
        _ => false,
    };
    inner.log.lock().expect("log lock").push(TokenRequest {
        authorized: post.granted,
        anonymous: false,
        scopes: post.scopes.clone(),
        service: post.service.clone(),
        account: post.username.clone(),
    });
    let granted = post.granted;
    let scopes = post.scopes.clone();
    let subject = post
        .username
        .clone()
        .unwrap_or_else(|| "refresh-token-user".to_string());
    inner.posts.lock().expect("posts lock").push(post);
    if !granted {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_grant", "error_description": "unknown refresh token or credentials"})),
        )
            .into_response();
    }
    inner.authorized.fetch_add(1, Ordering::SeqCst);
    let access: Vec<Access> = scopes.iter().filter_map(|s| parse_scope(s)).collect();
    let token = mint(&inner, &subject, &access);
    inner.issued.fetch_add(1, Ordering::SeqCst);
    let issued_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Json(json!({
        "access_token": token,
        "scope": scopes.join(" "),
        "expires_in": inner.expires_in.load(Ordering::SeqCst),
        "issued_at": issued_at,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32_nopad(b""), "");
        assert_eq!(base32_nopad(b"f"), "MY");
        assert_eq!(base32_nopad(b"fo"), "MZXQ");
        assert_eq!(base32_nopad(b"foo"), "MZXW6");
        assert_eq!(base32_nopad(b"foob"), "MZXW6YQ");
        assert_eq!(base32_nopad(b"fooba"), "MZXW6YTB");
        assert_eq!(base32_nopad(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn key_id_has_twelve_groups() {
        let kid = libtrust_key_id(b"anything");
        assert_eq!(kid.split(':').count(), 12);
        assert!(kid.split(':').all(|g| g.len() == 4));
    }

    #[test]
    fn scopes_parse() {
        let a = parse_scope("repository:demo/multi:pull,push").expect("scope");
        assert_eq!(a.name, "demo/multi");
        assert_eq!(a.actions, vec!["pull", "push"]);
    }
}
