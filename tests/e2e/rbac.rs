//! `--auth arm-rbac`: tokens from the emulator's managed-identity endpoint carry a principal
//! (`oid`); role assignments from the RBAC file decide what it may do, and denials use ARM's
//! `AuthorizationFailed` / `LinkedAuthorizationFailed` wording.

use acr_import_tests::{ArmResponse, TestEnv, TestImage};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{anonymous_source, assert_succeeded};

const OWNER: &str = "11111111-1111-4111-8111-111111111111";
const READER: &str = "22222222-2222-4222-8222-222222222222";
const IMPORTER: &str = "33333333-3333-4333-8333-333333333333";
const IMPORTER_WITH_READ: &str = "44444444-4444-4444-8444-444444444444";

struct Rbac {
    env: TestEnv,
    _dir: tempfile::TempDir,
    key: Vec<u8>,
}

impl Rbac {
    async fn start(sub: &str, rg: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let scope_sub = format!("/subscriptions/{sub}");
        let reg = |n: &str| {
            format!("{scope_sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{n}")
        };
        let config = json!({
            "roleDefinitions": [{"roleName": "Image Importer",
                                 "actions": ["Microsoft.ContainerRegistry/registries/importImage/action"]}],
            "roleAssignments": [
                {"principalId": OWNER, "roleDefinitionName": "Contributor", "scope": scope_sub},
                {"principalId": READER, "roleDefinitionName": "Reader", "scope": scope_sub},
                {"principalId": IMPORTER, "roleDefinitionName": "Image Importer", "scope": reg("RbacDst01")},
                {"principalId": IMPORTER, "roleDefinitionName": "AcrPull", "scope": reg("RbacSrc01")},
                {"principalId": IMPORTER_WITH_READ, "roleDefinitionName": "Image Importer", "scope": reg("RbacDst01")},
                {"principalId": IMPORTER_WITH_READ, "roleDefinitionName": "Reader", "scope": reg("RbacSrc01")},
            ]
        });
        let rbac_path = dir.path().join("rbac.json");
        std::fs::write(&rbac_path, config.to_string()).expect("write rbac.json");
        let key = b"a-test-signing-key-of-32-bytes!!".to_vec();
        let key_path = dir.path().join("token.key");
        std::fs::write(&key_path, &key).expect("write key");
        let env = TestEnv::start_with(|c| {
            c.flag("--auth", "arm-rbac")
                .flag("--rbac-config", rbac_path.display())
                .flag("--token-key-file", key_path.display())
        })
        .await;
        Self {
            env,
            _dir: dir,
            key,
        }
    }

    async fn token(&self, oid: &str) -> String {
        let url = format!(
            "{}/metadata/identity/oauth2/token?api-version=2019-08-01&resource=https%3A%2F%2F127.0.0.1%2F&object_id={oid}",
            self.env.arm.base()
        );
        let r = self
            .env
            .arm
            .send(Method::GET, &url, &[("X-IDENTITY-HEADER", "x")], None, None)
            .await;
        assert_eq!(r.status.as_u16(), 200, "{r}");
        r.json()["access_token"].as_str().expect("token").to_owned()
    }

    async fn send_as(
        &self,
        token: Option<&str>,
        method: Method,
        url: &str,
        body: &Value,
    ) -> ArmResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        self.env
            .arm
            .send(
                method,
                url,
                &headers,
                Some("application/json"),
                Some(body.to_string().into_bytes()),
            )
            .await
    }

    async fn import_as(&self, token: &str, registry: &str, body: &Value) -> ArmResponse {
        let url = self
            .env
            .arm
            .import_url(&self.env.sub, &self.env.rg, registry);
        self.send_as(Some(token), Method::POST, &url, body).await
    }
}

fn claims_for(oid: &str) -> Value {
    json!({"oid": oid, "sub": oid, "tid": "00000000-0000-0000-0000-00000000ac12",
           "aud": "https://127.0.0.1/", "iat": 1_700_000_000u64, "exp": 4_000_000_000u64})
}

fn from_source(env: &TestEnv, tag: &str) -> Value {
    json!({"source": {"resourceId": env.registry_id("RbacSrc01"), "sourceImage": "app/multi:v1"},
           "targetTags": [tag]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_assignments_decide_imports() {
    let sub = uuid::Uuid::new_v4().to_string();
    let image = TestImage::three_platform(7401);
    let (mut rbac, src) = tokio::join!(
        Rbac::start(&sub, "rbac-rg"),
        anonymous_source("demo/multi", "v1", &image)
    );
    // (TestEnv picks its own subscription and group; use the ones the RBAC file names.)
    rbac.env.sub = sub.clone();
    rbac.env.rg = "rbac-rg".into();
    let env = &rbac.env;
    let owner = rbac.token(OWNER).await;
    let poller = acr_import_tests::ArmClient::new(env.arm.base()).with_bearer(&owner);

    // No token: 401 with ARM's text. A token signed with another key: 401.
    let url = env.arm.registry_url(&env.sub, &env.rg, "RbacSrc01");
    let body = json!({"location": "eastus", "sku": {"name": "Premium"}});
    let none = rbac.send_as(None, Method::PUT, &url, &body).await;
    assert_eq!(none.status.as_u16(), 401, "{none}");
    assert_eq!(none.assert_arm_error(), "AuthenticationFailed");
    let forged = {
        let mut claims = claims_for(OWNER);
        claims["exp"] = json!(4_000_000_000u64);
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"not-the-service-key-at-all!!!!!!"),
        )
        .expect("forge")
    };
    let r = rbac.send_as(Some(&forged), Method::PUT, &url, &body).await;
    assert_eq!(r.status.as_u16(), 401, "{r}");
    assert_eq!(r.assert_arm_error(), "InvalidAuthenticationToken");
    // The same claims signed with the service's key pass.
    let good = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &{
            let mut c = claims_for(OWNER);
            c["exp"] = json!(4_000_000_000u64);
            c
        },
        &jsonwebtoken::EncodingKey::from_secret(&rbac.key),
    )
    .expect("sign");
    let r = rbac.send_as(Some(&good), Method::PUT, &url, &body).await;
    assert_eq!(r.status.as_u16(), 201, "{r}");

    // The Contributor creates the target and fills the source.
    let r = rbac
        .send_as(
            Some(&owner),
            Method::PUT,
            &env.arm.registry_url(&env.sub, &env.rg, "RbacDst01"),
            &body,
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{r}");
    let fill = json!({"source": {"registryUri": src.host(), "sourceImage": "demo/multi:v1"},
                      "targetTags": ["app/multi:v1"]});
    let r = rbac.import_as(&owner, "RbacSrc01", &fill).await;
    assert!(matches!(r.status.as_u16(), 200 | 202), "{r}");
    if r.status.as_u16() == 202 {
        assert_succeeded(
            &poller
                .poll_until_done(&r.async_operation(), acr_import_tests::env::IMPORT_TIMEOUT)
                .await,
        );
    }

    // Reader: no importImage on the target.
    let reader = rbac.token(READER).await;
    let r = rbac
        .import_as(&reader, "RbacDst01", &from_source(env, "r/multi:v1"))
        .await;
    assert_eq!(r.status.as_u16(), 403, "{r}");
    assert_eq!(r.assert_arm_error(), "AuthorizationFailed");
    let m = r.error_message().unwrap_or_default();
    let target_id = env.registry_id("RbacDst01");
    assert!(
        m.contains(&format!("with object id '{READER}'"))
            && m.contains("'Microsoft.ContainerRegistry/registries/importImage/action'")
            && m.to_lowercase()
                .contains(&format!("over scope '{}'", target_id.to_lowercase())),
        "{m}"
    );
    // Reading is fine for a Reader; writing is not.
    let got = rbac
        .send_as(
            Some(&reader),
            Method::GET,
            &env.arm.registry_url(&env.sub, &env.rg, "RbacDst01"),
            &json!({}),
        )
        .await;
    assert_eq!(got.status.as_u16(), 200, "{got}");

    // Lists show what the principal may read.
    let list_url = env.arm.url(&format!(
        "/subscriptions/{}/providers/Microsoft.ContainerRegistry/registries",
        env.sub
    ));
    let count = |r: ArmResponse| r.json()["value"].as_array().map(Vec::len);
    let as_reader = rbac
        .send_as(Some(&reader), Method::GET, &list_url, &json!({}))
        .await;
    assert_eq!(count(as_reader), Some(2));
    let importer = rbac.token(IMPORTER).await;
    let as_importer = rbac
        .send_as(Some(&importer), Method::GET, &list_url, &json!({}))
        .await;
    assert_eq!(count(as_importer), Some(0));

    // importImage on the target but only AcrPull (no registries/read) on the source: linked denial.
    let r = rbac
        .import_as(&importer, "RbacDst01", &from_source(env, "i/multi:v1"))
        .await;
    assert_eq!(r.status.as_u16(), 403, "{r}");
    assert_eq!(r.assert_arm_error(), "LinkedAuthorizationFailed");
    let m = r.error_message().unwrap_or_default();
    assert!(
        m.contains("has permission to perform action 'Microsoft.ContainerRegistry/registries/importImage/action'")
            && m.contains("Microsoft.ContainerRegistry/registries/read")
            && m.to_lowercase().contains(&env.registry_id("RbacSrc01").to_lowercase()),
        "{m}"
    );
    // From an external source it needs nothing on a linked scope.
    let r = rbac.import_as(&importer, "RbacDst01", &json!({"source": {"registryUri": src.host(), "sourceImage": "demo/multi:v1"}, "targetTags": ["ext/multi:v1"]})).await;
    assert_eq!(r.status.as_u16(), 202, "{r}");

    // importImage on the target and Reader on the source: accepted, and it copies.
    let full = rbac.token(IMPORTER_WITH_READ).await;
    let r = rbac
        .import_as(&full, "RbacDst01", &from_source(env, "ok/multi:v1"))
        .await;
    assert_eq!(r.status.as_u16(), 202, "{r}");
    assert_succeeded(
        &poller
            .poll_until_done(&r.async_operation(), acr_import_tests::env::IMPORT_TIMEOUT)
            .await,
    );
    env.backend_client()
        .assert_has_image("rbacdst01/ok/multi", Some("v1"), &image)
        .await;
}
