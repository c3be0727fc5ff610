//! The dashboard in a real browser: Playwright for Python driving Debian's chromium
//! (`tests/portal/`: `setup.sh` installs both when missing, `run.sh` runs `test_portal.py`).
//!
//! This test builds the world — an anonymous source registry holding a three-platform image,
//! the service in its default mode, and a second service with `--auth arm-rbac` and a token
//! whose principal is only a Reader — and hands it to the suite through the environment. The
//! suite creates a registry from the page, imports the image from the page and watches the
//! bar reach 100 % and Succeeded without a reload, browses every platform, sees a failed
//! import's ARM error, POSTs importImage from a page of another origin with fetch() and polls
//! the Azure-AsyncOperation URL it read from the headers, and sees ARM's denial text with the
//! Reader's token. `PORTAL_SCREENSHOTS=<dir>` also saves screenshots of the main views.

use std::path::{Path, PathBuf};
use std::process::Command;

use acr_import_tests::image::{Format, Platform};
use acr_import_tests::{TestEnv, TestImage};
use reqwest::Method;
use serde_json::json;

use crate::common::{anonymous_source, run};

const READER: &str = "15151515-3333-4333-8333-333333333333";

fn portal_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("portal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_browser() {
    let dir = portal_dir();
    let mut setup = Command::new("bash");
    setup.arg(dir.join("setup.sh"));
    let (ok, out) = run(setup).await;
    assert!(ok, "tests/portal/setup.sh failed:\n{out}");

    // Layers of a few MiB, so that the bar has something to show.
    let image = TestImage::index(1505, Format::Oci, &Platform::three(), &[3 << 20, 1 << 20]);
    let rbac_sub = uuid::Uuid::new_v4().to_string();
    let tmp = tempfile::tempdir().expect("temp dir");
    let rbac_path = tmp.path().join("rbac.json");
    std::fs::write(
        &rbac_path,
        json!({"roleAssignments": [{"principalId": READER, "roleDefinitionName": "Reader",
                                    "scope": format!("/subscriptions/{rbac_sub}")}]})
        .to_string(),
    )
    .expect("rbac.json");
    let (env, rbac_env, src) = tokio::join!(
        TestEnv::start(),
        TestEnv::start_with(|c| c
            .flag("--auth", "arm-rbac")
            .flag("--rbac-config", rbac_path.display())
            .flag("--subscription", &rbac_sub)),
        anonymous_source("demo/multi", "v1", &image)
    );
    let token_url = format!(
        "{}/metadata/identity/oauth2/token?api-version=2019-08-01&resource=https%3A%2F%2F127.0.0.1%2F&object_id={READER}",
        rbac_env.arm.base()
    );
    let t = rbac_env
        .arm
        .send(
            Method::GET,
            &token_url,
            &[("X-IDENTITY-HEADER", "x")],
            None,
            None,
        )
        .await;
    assert_eq!(t.status.as_u16(), 200, "{t}");
    let reader_token = t.json()["access_token"].as_str().expect("token").to_owned();

    let mut cmd = Command::new("bash");
    cmd.arg(dir.join("run.sh"))
        .env("PORTAL_URL", env.arm.base())
        .env("PORTAL_RBAC_URL", rbac_env.arm.base())
        .env("PORTAL_RBAC_TOKEN", &reader_token)
        .env("SRC_HOST", src.host())
        .env("SRC_IMAGE", "demo/multi:v1")
        .env("SRC_PLATFORMS", "linux/amd64,linux/arm64/v8,linux/arm/v7");
    let (ok, out) = run(cmd).await;
    println!("{out}");
    assert!(
        ok,
        "the browser suite failed:\n{out}\n--- service log ---\n{}",
        env.service.log()
    );
}
