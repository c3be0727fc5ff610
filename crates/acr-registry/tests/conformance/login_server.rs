//! The Host-based login server: `<name>.azurecr.io` makes repository names relative to the
//! registry, with and without auth.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn login_server_host_makes_names_relative() {
    let s = serve(None).await;
    let host = format!("myreg.azurecr.io:{}", s.addr.port());
    let blob = b"via the login server".to_vec();
    let d = sha256(&blob);
    let r = s
        .req(Method::POST, &format!("/v2/app/blobs/uploads/?digest={d}"))
        .header("host", &host)
        .body(blob.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("/v2/app/blobs/{d}"));
    // stored as myreg/app: visible by its full name on the plain address
    let r = s.get(&format!("/v2/myreg/app/blobs/{d}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        s.get(&format!("/v2/app/blobs/{d}")).await.status(),
        StatusCode::NOT_FOUND
    );
    s.push_blob("other/x", b"elsewhere").await;
    let r = s
        .req(Method::GET, "/v2/_catalog")
        .header("host", &host)
        .send()
        .await
        .expect("GET");
    assert_eq!(json_body(r).await["repositories"], json!(["app"]));
    let r = s.get("/v2/_catalog").await;
    assert_eq!(
        json_body(r).await["repositories"],
        json!(["myreg/app", "other/x"])
    );
    // a session started through the login server continues through it
    let r = s
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .header("host", &host)
        .send()
        .await
        .expect("POST");
    let loc = location(&r);
    assert!(loc.starts_with("/v2/app/blobs/uploads/"), "{loc}");
    let r = s
        .req(Method::GET, &loc)
        .header("host", &host)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // tags list names the repository as the client sees it
    let img = s.push_image("myreg/app", "v1", 20).await;
    let r = s
        .req(Method::GET, "/v2/app/tags/list")
        .header("host", &host)
        .send()
        .await
        .expect("GET");
    assert_eq!(json_body(r).await["name"], "app");
    let r = s
        .req(Method::GET, "/v2/app/manifests/v1")
        .header("host", "MYREG.azurecr.io")
        .send()
        .await
        .expect("GET");
    assert_eq!(
        r.bytes().await.expect("b").as_ref(),
        img.manifest.as_slice()
    );
}

#[tokio::test]
async fn login_server_host_with_auth_scopes_relative_names() {
    let u = users();
    let s = serve(Some(u.clone())).await;
    let host = format!("myreg.azurecr.io:{}", s.addr.port());
    let r = s
        .req(Method::GET, "/v2/app/tags/list")
        .header("host", &host)
        .send()
        .await
        .expect("GET");
    let c = challenge(&r);
    assert_eq!(c["realm"], format!("http://{host}/oauth2/token"));
    assert_eq!(c["service"], host);
    assert_eq!(c["scope"], "repository:app:pull");
    let r = s
        .req(Method::GET, "/oauth2/token")
        .header("host", &host)
        .basic_auth("alice", Some("secret"))
        .query(&[
            ("service", host.as_str()),
            ("scope", "repository:app:pull,push"),
        ])
        .send()
        .await
        .expect("token");
    let token = json_body(r).await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert!(u
        .asked
        .lock()
        .expect("lock")
        .contains(&Some("myreg/app".to_owned())));
    let r = s
        .req(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={}", sha256(b"x")),
        )
        .header("host", &host)
        .bearer_auth(&token)
        .body("x")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    // the same token works by the full name on the plain address: it grants myreg/app
    let r = s
        .req(
            Method::GET,
            &format!("/v2/myreg/app/blobs/{}", sha256(b"x")),
        )
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
}
