//! Auth: the Bearer token dance, refused scopes, bad credentials and tokens, mounts that need
//! pull on their source.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn auth_token_dance_grants_pull_and_push() {
    let s = serve(Some(users())).await;
    // the ping and a pull without credentials: 401 with the challenge
    let r = s.get("/v2/").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = challenge(&r);
    assert_eq!(c["realm"], format!("http://{}/oauth2/token", s.addr));
    assert_eq!(c["service"], s.addr.to_string());
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    let r = s.get("/v2/team/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&r)["scope"], "repository:team/app:pull");
    let r = s
        .req(Method::POST, "/v2/team/app/blobs/uploads/")
        .send()
        .await
        .expect("POST");
    assert_eq!(challenge(&r)["scope"], "repository:team/app:pull,push");

    // the token from the realm, for the challenged scope, lets the client push and pull
    let token = token_for(&s, "alice", "secret", &["repository:team/app:pull,push"]).await;
    let blob = b"authenticated".to_vec();
    let d = sha256(&blob);
    let r = s
        .req(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?digest={d}"),
        )
        .bearer_auth(&token)
        .body(blob.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .req(Method::GET, &format!("/v2/team/app/blobs/{d}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::GET, "/v2/")
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    // the token names no other repository
    let r = s
        .req(Method::GET, "/v2/team/other/tags/list")
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&r)["error"], "insufficient_scope");

    // several scopes in one request, and the POST form grant
    let r = s
        .req(Method::POST, "/oauth2/token")
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "secret"),
            ("service", "registry"),
            ("scope", "repository:team/a:pull repository:team/b:push"),
        ])
        .send()
        .await
        .expect("POST token");
    assert_eq!(r.status(), StatusCode::OK);
    let v = json_body(r).await;
    assert_eq!(v["scope"], "repository:team/a:pull repository:team/b:push");
    let t2 = v["access_token"].as_str().expect("token").to_owned();
    let r = s
        .req(Method::GET, "/v2/team/a/tags/list")
        .bearer_auth(&t2)
        .send()
        .await
        .expect("GET");
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "authorised; the repository is empty"
    );

    // the catalog needs its own scope
    let r = s
        .req(Method::GET, "/v2/_catalog")
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(challenge(&r)["scope"], "registry:catalog:*");
    let t3 = token_for(&s, "alice", "secret", &["registry:catalog:*"]).await;
    let r = s
        .req(Method::GET, "/v2/_catalog")
        .bearer_auth(&t3)
        .send()
        .await
        .expect("GET");
    assert_eq!(json_body(r).await["repositories"], json!(["team/app"]));

    // Basic credentials directly on /v2 work too
    let r = s
        .req(Method::GET, &format!("/v2/team/app/blobs/{d}"))
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn auth_refused_scope_is_not_granted() {
    let u = users();
    let s = serve(Some(u.clone())).await;
    let alice = token_for(&s, "alice", "secret", &["repository:team/app:pull,push"]).await;
    let img_blob = b"bob may read this".to_vec();
    let d = sha256(&img_blob);
    let r = s
        .req(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?digest={d}"),
        )
        .bearer_auth(&alice)
        .body(img_blob)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    // bob asks for pull and push: he gets pull only
    let r = s
        .req(Method::POST, "/oauth2/token")
        .form(&[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "hunter2"),
            (
                "scope",
                "repository:team/app:pull,push repository:elsewhere/x:pull",
            ),
        ])
        .send()
        .await
        .expect("token");
    let v = json_body(r).await;
    assert_eq!(v["scope"], "repository:team/app:pull");
    let bob = v["token"].as_str().expect("token").to_owned();
    let r = s
        .req(Method::GET, &format!("/v2/team/app/blobs/{d}"))
        .bearer_auth(&bob)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::POST, "/v2/team/app/blobs/uploads/")
        .bearer_auth(&bob)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = challenge(&r);
    assert_eq!(c["error"], "insufficient_scope");
    assert_eq!(c["scope"], "repository:team/app:pull,push");
    let r = s.delete(&format!("/v2/team/app/blobs/{d}")).await;
    assert_eq!(challenge(&r)["scope"], "repository:team/app:delete");
    // with Basic directly, a valid user refused an action is 403 DENIED
    let r = s
        .req(Method::POST, "/v2/team/app/blobs/uploads/")
        .basic_auth("bob", Some("hunter2"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(r).await, "DENIED");
    // the Authenticator was asked about full names only
    let asked = u.asked.lock().expect("lock").clone();
    assert!(asked.contains(&Some("team/app".to_owned())));
    assert!(asked.contains(&Some("elsewhere/x".to_owned())));
}

#[tokio::test]
async fn auth_wrong_password_and_bad_tokens_are_401() {
    let s = serve(Some(users())).await;
    let r = fetch_token(&s, "alice", "wrong", &["repository:team/app:pull"]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&r, "www-authenticate").is_some_and(|h| h.starts_with("Basic ")));
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    let r = s
        .get("/oauth2/token?service=registry&scope=repository:team/app:pull")
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s
        .req(Method::POST, "/oauth2/token")
        .form(&[
            ("grant_type", "password"),
            ("username", "nobody"),
            ("password", "x"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s
        .req(Method::POST, "/oauth2/token")
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Basic with a wrong password on /v2: 401 and the challenge
    let r = s
        .req(Method::GET, "/v2/team/app/tags/list")
        .basic_auth("alice", Some("nope"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).contains_key("realm"));
    // forged and garbage tokens
    let good = token_for(&s, "alice", "secret", &["repository:team/app:pull"]).await;
    let (payload, sig) = good.split_once('.').expect("dot");
    let forged = format!("{payload}x.{sig}");
    for t in [forged.as_str(), "garbage", ""] {
        let r = s
            .req(Method::GET, "/v2/team/app/tags/list")
            .bearer_auth(t)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{t}");
    }
    let r = s
        .req(Method::GET, "/v2/team/app/tags/list")
        .bearer_auth(&forged)
        .send()
        .await
        .expect("GET");
    assert_eq!(challenge(&r)["error"], "invalid_token");
    // a token of another registry (another key) is refused
    let other = serve(Some(users())).await;
    let foreign = token_for(&other, "alice", "secret", &["repository:team/app:pull"]).await;
    let r = s
        .req(Method::GET, "/v2/team/app/tags/list")
        .bearer_auth(&foreign)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn auth_mount_needs_pull_on_the_source() {
    let s = serve(Some(users())).await;
    let blob = b"mount me".to_vec();
    let d = sha256(&blob);
    let alice = token_for(&s, "alice", "secret", &["repository:team/src:pull,push"]).await;
    let r = s
        .req(
            Method::POST,
            &format!("/v2/team/src/blobs/uploads/?digest={d}"),
        )
        .bearer_auth(&alice)
        .body(blob)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    let mount = format!("/v2/team/dst/blobs/uploads/?mount={d}&from=team/src");
    // unauthenticated: the challenge asks for both repositories
    let r = s.post(&mount).await;
    assert_eq!(
        challenge(&r)["scope"],
        "repository:team/dst:pull,push repository:team/src:pull"
    );
    // a token for the target only: the mount falls back to an upload session
    let only_dst = token_for(&s, "alice", "secret", &["repository:team/dst:pull,push"]).await;
    let r = s
        .req(Method::POST, &mount)
        .bearer_auth(&only_dst)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // with pull on the source as well, it mounts
    let both = token_for(
        &s,
        "alice",
        "secret",
        &["repository:team/dst:pull,push", "repository:team/src:pull"],
    )
    .await;
    let r = s
        .req(Method::POST, &mount)
        .bearer_auth(&both)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    // no anonymous mount (without from) when auth is on
    let r = s
        .req(
            Method::POST,
            &format!("/v2/team/third/blobs/uploads/?mount={d}"),
        )
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}
