//! What the workflow modules share: the registry harness of `tests/common` (a server on
//! 127.0.0.1:0 over a temp dir, request helpers, test images, users) and the helpers of this
//! suite (files on disk, the token dance).

use std::sync::Arc;

use reqwest::{Method, StatusCode};

pub use crate::common::*;

/// Files under `dir`, recursively (0 when it does not exist).
pub fn count_files(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

pub fn users() -> Arc<Users> {
    Arc::new(Users::default())
}

/// Parses `Bearer realm="…",service="…",scope="…"` into its parameters.
pub fn challenge(r: &reqwest::Response) -> std::collections::HashMap<String, String> {
    let h =
        header(r, "www-authenticate").unwrap_or_else(|| panic!("no challenge: {:?}", r.headers()));
    let rest = h
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not Bearer: {h}"));
    let mut out = std::collections::HashMap::new();
    let mut s = rest;
    while let Some((k, v)) = s.split_once("=\"") {
        let Some((val, tail)) = v.split_once('"') else {
            break;
        };
        out.insert(k.trim_start_matches(',').trim().to_owned(), val.to_owned());
        s = tail;
    }
    out
}

pub async fn fetch_token(s: &Server, user: &str, pass: &str, scopes: &[&str]) -> reqwest::Response {
    let mut q: Vec<(&str, &str)> = vec![("service", "registry")];
    for sc in scopes {
        q.push(("scope", sc));
    }
    s.req(Method::GET, "/oauth2/token")
        .basic_auth(user, Some(pass))
        .query(&q)
        .send()
        .await
        .expect("token")
}

pub async fn token_for(s: &Server, user: &str, pass: &str, scopes: &[&str]) -> String {
    let r = fetch_token(s, user, pass, scopes).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = json_body(r).await;
    assert_eq!(v["token"], v["access_token"]);
    assert!(v["expires_in"].as_u64().is_some_and(|e| e > 0));
    assert!(v["issued_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    v["token"].as_str().expect("token").to_owned()
}
