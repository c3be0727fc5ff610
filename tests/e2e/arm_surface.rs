//! The ARM surface around importImage that Azure clients rely on: the full Registry resource,
//! PATCH, checkNameAvailability, cloud metadata, subscriptions, resource lookup, resource
//! groups, the managed-identity token endpoint, and HTTPS with a self-signed CA.

use acr_import_tests::util::free_port;
use acr_import_tests::TestEnv;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

fn jwt_claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .expect("base64url payload");
    serde_json::from_slice(&payload).expect("JSON claims")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_resource_patch_and_name_check() {
    let env = TestEnv::start().await;
    let (arm, sub, rg) = (&env.arm, env.sub.as_str(), env.rg.as_str());
    let r = env.create_registry("FullReg1").await;
    let p = &r["properties"];
    for (k, want) in [
        ("publicNetworkAccess", json!("Enabled")),
        ("networkRuleBypassOptions", json!("AzureServices")),
        ("anonymousPullEnabled", json!(false)),
        ("adminUserEnabled", json!(false)),
        ("provisioningState", json!("Succeeded")),
        ("zoneRedundancy", json!("Disabled")),
        (
            "networkRuleSet",
            json!({"defaultAction": "Allow", "ipRules": []}),
        ),
    ] {
        assert_eq!(p[k], want, "properties.{k} in {r}");
    }
    assert_eq!(r["sku"]["tier"], r["sku"]["name"], "{r}");
    for k in [
        "createdBy",
        "createdByType",
        "createdAt",
        "lastModifiedBy",
        "lastModifiedAt",
    ] {
        assert!(r["systemData"][k].is_string(), "systemData.{k} in {r}");
    }

    // PATCH: tags replaced, properties merged, SKU changed; other fields kept.
    let url = arm.registry_url(sub, rg, "FullReg1");
    let patched = arm
        .send_json(
            Method::PATCH,
            &url,
            &json!({"tags": {"team": "a"}, "sku": {"name": "Premium"},
                    "properties": {"adminUserEnabled": true,
                                   "networkRuleSet": {"defaultAction": "Deny", "ipRules": [{"action": "Allow", "value": "10.0.0.0/8"}]}}}),
        )
        .await;
    assert_eq!(patched.status.as_u16(), 200, "{patched}");
    let v = patched.json();
    assert_eq!(v["tags"], json!({"team": "a"}), "{v}");
    assert_eq!(v["sku"]["name"], "Premium", "{v}");
    assert_eq!(v["properties"]["adminUserEnabled"], true, "{v}");
    assert_eq!(
        v["properties"]["networkRuleSet"]["defaultAction"], "Deny",
        "{v}"
    );
    assert_eq!(
        v["properties"]["networkRuleSet"]["ipRules"][0]["value"], "10.0.0.0/8",
        "{v}"
    );
    assert_eq!(v["properties"]["publicNetworkAccess"], "Enabled", "{v}");
    assert_eq!(v["location"], r["location"], "{v}");
    assert_eq!(arm.get(&url).await.json()["sku"]["name"], "Premium");

    // Bad PATCH bodies → 400 with an ARM error; a missing registry → 404.
    for bad in [
        json!({"sku": {"name": "Gold"}}),
        json!({"properties": {"publicNetworkAccess": "Sometimes"}}),
        json!({"properties": {"networkRuleSet": {"defaultAction": "Maybe"}}}),
        json!({"properties": {"networkRuleSet": {"defaultAction": "Deny", "ipRules": [{"value": "not-an-ip"}]}}}),
    ] {
        let resp = arm.send_json(Method::PATCH, &url, &bad).await;
        assert_eq!(resp.status.as_u16(), 400, "{bad}: {resp}");
        resp.assert_arm_error();
    }
    let missing = arm
        .send_json(
            Method::PATCH,
            &arm.registry_url(sub, rg, "NoSuchReg1"),
            &json!({"tags": {}}),
        )
        .await;
    assert_eq!(missing.status.as_u16(), 404, "{missing}");
    assert_eq!(missing.error_code().as_deref(), Some("ResourceNotFound"));

    // checkNameAvailability: names are unique across the emulator (any subscription).
    let check = |name: &str, ty: &str| {
        let body = json!({"name": name, "type": ty});
        let url = arm.url(&format!(
            "/subscriptions/{}/providers/Microsoft.ContainerRegistry/checkNameAvailability",
            uuid::Uuid::new_v4()
        ));
        async move { arm.send_json(Method::POST, &url, &body).await }
    };
    let taken = check("fullreg1", "Microsoft.ContainerRegistry/registries").await;
    assert_eq!(taken.status.as_u16(), 200, "{taken}");
    assert_eq!(taken.json()["nameAvailable"], false);
    assert_eq!(taken.json()["reason"], "AlreadyExists");
    let free = check("freename1", "Microsoft.ContainerRegistry/registries").await;
    assert_eq!(free.json()["nameAvailable"], true, "{free}");
    let invalid = check("a-b", "Microsoft.ContainerRegistry/registries").await;
    assert_eq!(invalid.json()["reason"], "Invalid", "{invalid}");
    let wrong_type = check("freename1", "Microsoft.Storage/storageAccounts").await;
    assert_eq!(wrong_type.status.as_u16(), 400, "{wrong_type}");
    wrong_type.assert_arm_error();

    // The same name in another subscription is refused on PUT.
    let other = arm
        .put_registry(&uuid::Uuid::new_v4().to_string(), rg, "fullREG1")
        .await;
    assert_eq!(other.status.as_u16(), 409, "{other}");
    assert_eq!(other.error_code().as_deref(), Some("AlreadyInUse"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_metadata_subscriptions_resources_and_token() {
    let configured = uuid::Uuid::new_v4().to_string();
    let env = TestEnv::start_with(|c| c.flag("--subscription", &configured)).await;
    let arm = &env.arm;
    env.create_registry("LookupReg1").await;

    // `az cloud register` asks for //metadata/endpoints when given a trailing slash.
    for path in [
        "/metadata/endpoints?api-version=2022-09-01",
        "//metadata/endpoints?api-version=2022-09-01",
    ] {
        let m = arm.get(&format!("{}{path}", arm.base())).await;
        assert_eq!(m.status.as_u16(), 200, "{m}");
        let v = m.json();
        assert_eq!(v["resourceManager"], format!("{}/", arm.base()), "{v}");
        assert_eq!(
            v["authentication"]["audiences"][0],
            format!("{}/", arm.base()),
            "{v}"
        );
        assert!(v["authentication"]["loginEndpoint"].is_string(), "{v}");
        assert_eq!(v["suffixes"]["acrLoginServer"], "azurecr.io", "{v}");
        assert!(v["name"].is_string(), "{v}");
    }

    // Subscriptions: the configured one first, then those holding registries.
    let subs = arm
        .get(&arm.url("/subscriptions?api-version=2022-12-01"))
        .await;
    assert_eq!(subs.status.as_u16(), 200, "{subs}");
    let list = subs.json();
    let ids: Vec<&str> = list["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|s| s["subscriptionId"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids, vec![configured.as_str(), env.sub.as_str()], "{list}");
    let first = &list["value"][0];
    assert_eq!(first["id"], format!("/subscriptions/{configured}"));
    assert_eq!(first["state"], "Enabled");
    assert!(
        first["tenantId"].is_string() && first["displayName"].is_string(),
        "{first}"
    );
    let one = arm
        .get(&arm.url(&format!("/subscriptions/{}", env.sub)))
        .await;
    assert_eq!(one.status.as_u16(), 200, "{one}");
    let unknown = arm
        .get(&arm.url(&format!("/subscriptions/{}", uuid::Uuid::new_v4())))
        .await;
    assert_eq!(unknown.status.as_u16(), 404, "{unknown}");
    assert_eq!(
        unknown.error_code().as_deref(),
        Some("SubscriptionNotFound")
    );

    // Resources - List with the filter `az acr` sends finds the registry and its group.
    let filter = "$filter=resourceType%20eq%20%27Microsoft.ContainerRegistry%2Fregistries%27&api-version=2024-11-01";
    let res = arm
        .get(&arm.url(&format!("/subscriptions/{}/resources?{filter}", env.sub)))
        .await;
    assert_eq!(res.status.as_u16(), 200, "{res}");
    let v = res.json();
    assert_eq!(v["value"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["value"][0]["id"], env.registry_id("LookupReg1"), "{v}");
    let other_type = arm
        .get(&arm.url(&format!(
            "/subscriptions/{}/resources?$filter=resourceType%20eq%20%27Microsoft.Storage%2FstorageAccounts%27&api-version=2024-11-01",
            env.sub
        )))
        .await;
    assert_eq!(other_type.json()["value"], json!([]), "{other_type}");
    let bad_filter = arm
        .get(&arm.url(&format!(
            "/subscriptions/{}/resources?$filter=location%20gt%201&api-version=2024-11-01",
            env.sub
        )))
        .await;
    assert_eq!(bad_filter.status.as_u16(), 400, "{bad_filter}");
    bad_filter.assert_arm_error();

    // Resource groups exist implicitly.
    let rg = arm
        .get(&arm.url(&format!(
            "/subscriptions/{}/resourcegroups/{}?api-version=2022-09-01",
            env.sub, env.rg
        )))
        .await;
    assert_eq!(rg.status.as_u16(), 200, "{rg}");
    assert_eq!(rg.json()["location"], "eastus", "{rg}");

    // Managed-identity tokens: the header is required; the token is a JWT with tid/oid/aud/exp.
    let token_url = format!(
        "{}/metadata/identity/oauth2/token?api-version=2019-08-01&resource={}",
        arm.base(),
        "https%3A%2F%2F127.0.0.1%3A1%2F"
    );
    let no_header = arm.get(&token_url).await;
    assert_eq!(no_header.status.as_u16(), 400, "{no_header}");
    let t = arm
        .send(
            Method::GET,
            &token_url,
            &[("X-IDENTITY-HEADER", "anything")],
            None,
            None,
        )
        .await;
    assert_eq!(t.status.as_u16(), 200, "{t}");
    let body = t.json();
    let expires_on: u64 = body["expires_on"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("expires_on is epoch seconds as a string");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(expires_on > now + 3600, "{body}");
    let claims = jwt_claims(body["access_token"].as_str().expect("access_token"));
    assert_eq!(claims["aud"], "https://127.0.0.1:1/", "{claims}");
    assert_eq!(claims["exp"].as_u64(), Some(expires_on), "{claims}");
    assert!(
        claims["tid"].is_string() && claims["oid"].is_string(),
        "{claims}"
    );
    assert_eq!(claims["tid"], first["tenantId"], "{claims}");
    let other_oid = uuid::Uuid::new_v4().to_string();
    let t2 = arm
        .send(
            Method::GET,
            &format!("{token_url}&object_id={other_oid}"),
            &[("Metadata", "true")],
            None,
            None,
        )
        .await;
    assert_eq!(
        jwt_claims(t2.json()["access_token"].as_str().expect("token"))["oid"],
        other_oid
    );

    // The registry shows who created it (the token's oid) in systemData.
    let token = body["access_token"].as_str().expect("token").to_owned();
    let auth = format!("Bearer {token}");
    let created = arm
        .send(
            Method::PUT,
            &arm.registry_url(&env.sub, &env.rg, "ByTokenReg1"),
            &[("Authorization", auth.as_str())],
            Some("application/json"),
            Some(br#"{"location":"westeurope","sku":{"name":"Basic"}}"#.to_vec()),
        )
        .await;
    assert_eq!(created.status.as_u16(), 201, "{created}");
    assert_eq!(
        created.json()["systemData"]["createdBy"],
        claims["oid"],
        "{created}"
    );
    assert_eq!(
        created.json()["systemData"]["createdByType"],
        "Application",
        "{created}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_with_a_self_signed_ca() {
    let tls_port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = dir.path().join("ca.pem");
    let env = TestEnv::start_with(|c| {
        c.flag("--listen-tls", format!("127.0.0.1:{tls_port}"))
            .arg("--tls-self-signed")
            .flag("--tls-ca-out", ca_path.display())
    })
    .await;
    let ca = std::fs::read(&ca_path).expect("the CA was written");
    let cert = reqwest::Certificate::from_pem(&ca).expect("PEM CA");
    let https = reqwest::Client::builder()
        .add_root_certificate(cert)
        .no_proxy()
        .build()
        .expect("client");
    for host in ["127.0.0.1", "localhost"] {
        let base = format!("https://{host}:{tls_port}");
        let m: Value = https
            .get(format!("{base}/metadata/endpoints"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("HTTPS to {base}: {e}"))
            .json()
            .await
            .expect("json");
        assert_eq!(m["resourceManager"], format!("{base}/"), "{m}");
    }
    // Location URLs handed out on the TLS listener are https; on the plain one http.
    let base = format!("https://127.0.0.1:{tls_port}");
    let created = https
        .put(format!(
            "{base}{}?api-version=2025-11-01",
            env.registry_id("TlsReg1")
        ))
        .json(&json!({"location": "eastus", "sku": {"name": "Standard"}}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(created.status().as_u16(), 201);
    let resp = https
        .post(format!(
            "{base}{}/importImage?api-version=2025-11-01",
            env.registry_id("TlsReg1")
        ))
        .json(&json!({"source": {"registryUri": "127.0.0.1:1", "sourceImage": "x:y"}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 202);
    for h in ["location", "azure-asyncoperation"] {
        let v = resp.headers()[h].to_str().expect("ascii");
        assert!(v.starts_with(&format!("{base}/subscriptions/")), "{h}: {v}");
    }
    // The plain listener still works for curl users.
    let plain = env.arm.get_registry(&env.sub, &env.rg, "TlsReg1").await;
    assert_eq!(plain.status.as_u16(), 200, "{plain}");
    // The CA is kept for the next start (trust it once): a restart reuses it.
    let kept = std::fs::read(
        env.service
            .log_path()
            .parent()
            .expect("dir")
            .join(".acr-import/tls/ca.pem"),
    )
    .expect("CA kept in the default --tls-dir");
    assert_eq!(kept, ca);
}
