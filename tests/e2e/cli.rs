//! `acr-import import`, the client command, against a running service: a live bar in a
//! pseudo-terminal, plain lines without one, a failing import, `--file` with a failing line,
//! `--no-wait`, and the messages for an unreachable service, a missing registry and a bad
//! reference. The source password never shows in the command's output.

use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use acr_import_tests::image::Format;
use acr_import_tests::service::service_bin;
use acr_import_tests::util::free_port;
use acr_import_tests::{TestEnv, TestImage, TestRegistry, ThrottleProxy};

use crate::common::{anonymous_source, assert_succeeded, target, REG};

/// The subscription the service lists first (its default `--subscription`).
const DEFAULT_SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";

/// `acr-import import --endpoint <env> ARGS`, with no client setting inherited from the
/// environment of the test run.
fn import_cmd(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(service_bin());
    cmd.arg("import").args(["--endpoint", endpoint]).args(args);
    for var in [
        "ACR_IMPORT_ENDPOINT",
        "ACR_IMPORT_SOURCE_USERNAME",
        "ACR_IMPORT_SOURCE_PASSWORD",
        "ACR_IMPORT_TOKEN",
        "ACR_IMPORT_CA_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// What a run printed and how it ended.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Both streams as a terminal would show them (one pipe, in order).
    merged: String,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}--- merged\n{}",
            self.code, self.stdout, self.stderr, self.merged
        )
    }
}

/// Runs `cmd` off the runtime without a terminal. With `merged`, stdout and stderr go to one
/// file, in the order they were written (`merged` only); otherwise to a file each (`merged`
/// is then stdout followed by stderr).
async fn run_plain(mut cmd: Command, merged: bool) -> Ran {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("temp dir");
        let out_path = dir.path().join("out");
        let err_path = dir.path().join("err");
        let out = std::fs::File::create(&out_path).expect("out file");
        let err = if merged {
            out.try_clone().expect("dup")
        } else {
            std::fs::File::create(&err_path).expect("err file")
        };
        let status = cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .status()
            .expect("run acr-import import");
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        let stdout = read(&out_path);
        let (stdout, stderr, merged_text) = if merged {
            (String::new(), String::new(), stdout)
        } else {
            let stderr = read(&err_path);
            let m = format!("{stdout}{stderr}");
            (stdout, stderr, m)
        };
        Ran {
            code: status.code(),
            stdout,
            stderr,
            merged: merged_text,
        }
    })
    .await
    .expect("join")
}

/// Runs `cmd` with stdin, stdout and stderr on a pseudo-terminal of 120 columns; returns the
/// exit code and everything the terminal received.
async fn run_in_pty(mut cmd: Command) -> (Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        let size = nix::pty::Winsize {
            ws_row: 30,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(&size, None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let dup = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup pty"));
        cmd.stdin(dup(&slave))
            .stdout(dup(&slave))
            .stderr(dup(&slave))
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR");
        let mut child = cmd.spawn().expect("spawn acr-import import");
        // Only the child holds the terminal now: reading ends (EIO) when it exits.
        drop(cmd);
        drop(slave);
        let mut master = std::fs::File::from(pty.master);
        let mut screen = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => screen.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // EIO: the last holder of the terminal closed it.
                Err(_) => break,
            }
        }
        let status = child.wait().expect("wait");
        (status.code(), String::from_utf8_lossy(&screen).into_owned())
    })
    .await
    .expect("join")
}

/// Every `NN%` the bars drew.
fn percents(screen: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for (i, _) in screen.match_indices('%') {
        let digits: String = screen[..i]
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if let Ok(n) = digits.parse() {
            found.push(n);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_bar_in_a_terminal() {
    // An index of two platforms, 4 MiB of layers, read at 1 MiB/s: several seconds of
    // progress for the bar to draw.
    let image = TestImage::index(
        1601,
        Format::Oci,
        &[
            acr_import_tests::Platform::amd64(),
            acr_import_tests::Platform::arm64(),
        ],
        &[1024 * 1024, 1024 * 1024],
    );
    let (env, src) = tokio::join!(TestEnv::start(), anonymous_source("demo/app", "v1", &image));
    let slow = ThrottleProxy::start(&src.host(), Some(1024 * 1024)).await;
    // In the service's default subscription: found without --subscription and -g.
    env.arm
        .create_registry(DEFAULT_SUBSCRIPTION, &env.rg, REG)
        .await;

    let source = format!("{}/demo/app:v1", slow.host());
    let (code, screen) = run_in_pty(import_cmd(
        &env.service.base_url(),
        &["--registry", REG, "--source", &source, "-t", "app:v1"],
    ))
    .await;
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("\x1b["),
        "no escape sequence drawn: {screen:?}"
    );
    assert!(screen.contains('\r'), "{screen:?}");
    let seen = percents(&screen);
    assert_eq!(
        seen.last(),
        Some(&100),
        "the bar does not end at 100 %: {screen:?}"
    );
    assert!(
        seen.iter().any(|p| *p < 100),
        "no frame before the end: {seen:?} in {screen:?}"
    );
    // 1 index + 2 manifests; 2 configs + 4 layers.
    assert!(
        screen.contains("Succeeded: 3/3 manifests, 6/6 blobs"),
        "{screen:?}"
    );
    env.backend_client()
        .assert_has_image(&target("app"), Some("v1"), &image)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_lines_without_a_terminal_and_no_password() {
    let image = TestImage::single(1602, Format::Docker, &[3000, 90_000]);
    let password = "s3cret-Pa55word-never-shown";
    let (env, src) = tokio::join!(TestEnv::start(), TestRegistry::htpasswd("robot", password));
    src.client()
        .push_image("team/app", "v2", &image)
        .await
        .expect("push");
    env.create_registry(REG).await;

    let source = format!("{}/team/app:v2", src.host());
    let base = env.service.base_url();
    let args = [
        "-n",
        REG,
        "--source",
        &source,
        "-t",
        "app:v2",
        "--subscription",
        &env.sub,
        "-g",
        &env.rg,
        "-u",
        "robot",
        "-p",
        password,
    ];
    let ran = run_plain(import_cmd(&base, &args), true).await;
    assert_eq!(ran.code, Some(0), "{ran}");
    assert!(
        !ran.merged.contains('\x1b'),
        "escape codes without a terminal: {ran}"
    );
    assert!(!ran.merged.contains('\r'), "{ran}");
    let last = ran.merged.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("app:v2: Succeeded: 1/1 manifests, 3/3 blobs, "),
        "last line: {last:?}\n{ran}"
    );
    assert!(ran.merged.contains("accepted as registries-"), "{ran}");
    assert!(
        !ran.merged.contains(password),
        "the password was printed: {ran}"
    );
    env.backend_client()
        .assert_has_image(&target("app"), Some("v2"), &image)
        .await;

    // The password from the environment, the same import again: NoForce refuses the
    // existing tag (Conflict), --force overwrites it.
    let mut again = import_cmd(
        &base,
        &[
            "-n", REG, "--source", &source, "-t", "app:v2", "-u", "robot",
        ],
    );
    again
        .env("ACR_IMPORT_SOURCE_PASSWORD", password)
        .args(["--subscription", &env.sub]);
    let ran = run_plain(again, false).await;
    assert_eq!(ran.code, Some(1), "{ran}");
    assert!(ran.stdout.contains("app:v2: Failed: Conflict: "), "{ran}");
    assert!(!ran.merged.contains(password), "{ran}");
    let mut forced = import_cmd(
        &base,
        &[
            "-n", REG, "--source", &source, "-t", "app:v2", "-u", "robot", "--force",
        ],
    );
    forced
        .env("ACR_IMPORT_SOURCE_PASSWORD", password)
        .args(["--subscription", &env.sub]);
    let ran = run_plain(forced, false).await;
    assert_eq!(ran.code, Some(0), "{ran}");
    assert!(!ran.merged.contains(password), "{ran}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_import_and_friendly_errors() {
    let image = TestImage::single(1603, Format::Oci, &[500]);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("demo/present", "v1", &image)
    );
    env.create_registry(REG).await;
    let base = env.service.base_url();
    let with_sub = |extra: &[&str]| {
        let mut args = vec!["--subscription", env.sub.as_str()];
        args.extend_from_slice(extra);
        import_cmd(&base, &args)
    };

    // A missing source: the operation fails, its ARM code and message are printed.
    let missing = format!("{}/demo/nothere:v1", src.host());
    let ran = run_plain(
        with_sub(&["-n", REG, "--source", &missing, "-t", "x:v1"]),
        false,
    )
    .await;
    assert_eq!(ran.code, Some(1), "{ran}");
    let line = ran
        .stdout
        .lines()
        .find(|l| l.starts_with("x:v1: Failed: SourceImageNotFound: "))
        .unwrap_or_else(|| panic!("no failure line: {ran}"));
    assert!(
        line.contains("demo/nothere") && line.contains("v1"),
        "{line}"
    );

    // The registry is not in the subscription.
    let ran = run_plain(with_sub(&["-n", "NoSuchReg", "--source", &missing]), false).await;
    assert_eq!(ran.code, Some(1), "{ran}");
    assert!(
        ran.stderr.contains(&format!(
            "error: registry 'NoSuchReg' was not found in subscription {}",
            env.sub
        )),
        "{ran}"
    );
    // Without --subscription: the default one, and where the registry really is.
    let ran = run_plain(import_cmd(&base, &["-n", REG, "--source", &missing]), false).await;
    assert_eq!(ran.code, Some(1), "{ran}");
    assert!(
        ran.stderr.contains(&format!(
            "it is in subscription {}, resource group {}: add --subscription {}",
            env.sub, env.rg, env.sub
        )),
        "{ran}"
    );
    // An explicit resource group that does not hold it.
    let ran = run_plain(
        with_sub(&["-n", REG, "-g", "other-rg", "--source", &missing]),
        false,
    )
    .await;
    assert_eq!(ran.code, Some(1), "{ran}");
    assert!(
        ran.merged
            .contains("registry 'MyReg' was not found in resource group 'other-rg'"),
        "{ran}"
    );

    // Bad references: refused before anything is sent (exit 2).
    for (source, says) in [
        ("demo/app:v1", "names no source registry"),
        ("registry.example.com/Demo/App:v1", "--source"),
    ] {
        let ran = run_plain(with_sub(&["-n", REG, "--source", source]), false).await;
        assert_eq!(ran.code, Some(2), "{ran}");
        assert!(ran.stderr.contains("error: bad reference: "), "{ran}");
        assert!(ran.stderr.contains(says), "{ran}");
    }
    let ran = run_plain(
        with_sub(&["-n", REG, "--source", &missing, "-t", "a@b"]),
        false,
    )
    .await;
    assert_eq!(ran.code, Some(2), "{ran}");
    assert!(ran.stderr.contains("-t/--image"), "{ran}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_service() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let ran = run_plain(
        import_cmd(
            &endpoint,
            &["-n", REG, "--source", "127.0.0.1:5001/demo/app:v1"],
        ),
        false,
    )
    .await;
    assert_eq!(ran.code, Some(1), "{ran}");
    assert!(
        ran.stderr.contains(&format!(
            "error: cannot reach the acr-import service at {endpoint}"
        )),
        "{ran}"
    );
    assert!(ran.stderr.contains("Is it running"), "{ran}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_one_failing_line() {
    let a = TestImage::single(1604, Format::Oci, &[2000, 4000]);
    let b = TestImage::single(1605, Format::Docker, &[3000]);
    let (env, src) = tokio::join!(TestEnv::start(), anonymous_source("demo/a", "v1", &a));
    src.client()
        .push_image("demo/b", "v1", &b)
        .await
        .expect("push b");
    env.create_registry(REG).await;
    let host = src.host();
    let dir = tempfile::tempdir().expect("temp dir");
    let list = dir.path().join("images.txt");
    let missing_line = format!("{host}/demo/missing:v1 missing:v1");
    std::fs::write(
        &list,
        format!(
            "# three images\n{host}/demo/a:v1 copied/a:v1\n\n{missing_line}\n\t{host}/demo/b:v1   copied/b:v1\n"
        ),
    )
    .expect("write list");
    let ran = run_plain(
        import_cmd(
            &env.service.base_url(),
            &[
                "-n",
                REG,
                "--subscription",
                &env.sub,
                "--file",
                &list.display().to_string(),
            ],
        ),
        false,
    )
    .await;
    assert_eq!(ran.code, Some(1), "{ran}");
    assert!(!ran.merged.contains('\x1b'), "{ran}");
    assert!(
        ran.stdout.contains("3 imports: 2 succeeded, 1 failed"),
        "{ran}"
    );
    assert!(
        ran.stdout
            .contains(&format!("  line 4 ({missing_line}): SourceImageNotFound: ")),
        "the summary does not name the failing line: {ran}"
    );
    assert!(ran.stdout.contains("copied/a:v1: Succeeded"), "{ran}");
    assert!(ran.stdout.contains("copied/b:v1: Succeeded"), "{ran}");
    let backend = env.backend_client();
    backend
        .assert_has_image(&target("copied/a"), Some("v1"), &a)
        .await;
    backend
        .assert_has_image(&target("copied/b"), Some("v1"), &b)
        .await;

    // A bad line: nothing is sent, every bad line is named.
    std::fs::write(&list, format!("{host}/demo/a:v1 ok:v1\ndemo/a:v1\n")).expect("write");
    let ran = run_plain(
        import_cmd(
            &env.service.base_url(),
            &[
                "-n",
                REG,
                "--subscription",
                &env.sub,
                "--file",
                &list.display().to_string(),
            ],
        ),
        false,
    )
    .await;
    assert_eq!(ran.code, Some(2), "{ran}");
    assert!(
        ran.stderr.contains("1 bad line(s), nothing was imported"),
        "{ran}"
    );
    assert!(ran.stderr.contains("line 2 (demo/a:v1): "), "{ran}");
    assert!(backend
        .tags_list(&target("ok"))
        .await
        .unwrap_or_default()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wait_prints_the_operation_url() {
    let image = TestImage::single(1606, Format::Oci, &[1500]);
    let (env, src) = tokio::join!(TestEnv::start(), anonymous_source("demo/nw", "v1", &image));
    env.create_registry(REG).await;
    let source = format!("{}/demo/nw:v1", src.host());
    let ran = run_plain(
        import_cmd(
            &env.service.base_url(),
            &[
                "-n",
                REG,
                "--subscription",
                &env.sub,
                "--source",
                &source,
                "--no-wait",
            ],
        ),
        false,
    )
    .await;
    assert_eq!(ran.code, Some(0), "{ran}");
    let url = ran.stdout.trim();
    assert_eq!(url.lines().count(), 1, "{ran}");
    assert!(
        url.starts_with(&env.service.base_url()) && url.contains("/operationStatuses/registries-"),
        "not a status URL: {ran}"
    );
    let status = env.arm.poll_until_done(url, Duration::from_secs(60)).await;
    assert_succeeded(&status);
    // The default target: the source repository and tag.
    env.backend_client()
        .assert_has_image(&target("demo/nw"), Some("v1"), &image)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_for_an_arm_rbac_service() {
    const OWNER: &str = "11111111-1111-4111-8111-111111111111";
    let dir = tempfile::tempdir().expect("temp dir");
    let sub = uuid::Uuid::new_v4().to_string();
    let rbac = serde_json::json!({"roleAssignments": [
        {"principalId": OWNER, "roleDefinitionName": "Contributor", "scope": format!("/subscriptions/{sub}")}
    ]});
    let rbac_path = dir.path().join("rbac.json");
    std::fs::write(&rbac_path, rbac.to_string()).expect("write rbac.json");
    let key_path = dir.path().join("token.key");
    std::fs::write(&key_path, b"a-test-signing-key-of-32-bytes!!").expect("write key");
    let image = TestImage::single(1607, Format::Oci, &[700]);
    let (env, src) = tokio::join!(
        TestEnv::start_with(|c| c
            .flag("--auth", "arm-rbac")
            .flag("--rbac-config", rbac_path.display())
            .flag("--token-key-file", key_path.display())),
        anonymous_source("demo/rbac", "v1", &image)
    );
    let base = env.service.base_url();
    let identity = |oid: &str| {
        let base = base.clone();
        let oid = oid.to_owned();
        async move {
            let url = format!(
                "{base}/metadata/identity/oauth2/token?api-version=2019-08-01&resource={base}/&object_id={oid}"
            );
            let r = reqwest::Client::new()
                .get(url)
                .header("Metadata", "true")
                .send()
                .await
                .expect("token endpoint");
            let v: serde_json::Value = r.json().await.expect("token JSON");
            v["access_token"].as_str().expect("access_token").to_owned()
        }
    };
    let owner_token = identity(OWNER).await;
    let created = acr_import_tests::ArmClient::new(&base)
        .with_bearer(&owner_token)
        .put_registry(&sub, &env.rg, REG)
        .await;
    assert!(created.status.is_success(), "{created}");
    let source = format!("{}/demo/rbac:v1", src.host());
    let args = |tag: &'static str| -> Vec<String> {
        [
            "-n",
            REG,
            "--subscription",
            &sub,
            "--source",
            &source,
            "-t",
            tag,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let cmd = |a: &[String]| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        import_cmd(&base, &refs)
    };

    // No token: the 401 says what to do.
    let ran = run_plain(cmd(&args("a:v1")), false).await;
    assert_eq!(ran.code, Some(1), "{ran}");
    assert!(ran.stderr.contains("AuthenticationFailed"), "{ran}");
    assert!(
        ran.stderr
            .contains("pass --token or ACR_IMPORT_TOKEN, or --identity"),
        "{ran}"
    );

    // A token from the environment.
    let mut with_env = cmd(&args("a:v1"));
    with_env.env("ACR_IMPORT_TOKEN", &owner_token);
    let ran = run_plain(with_env, false).await;
    assert_eq!(ran.code, Some(0), "{ran}");
    assert!(
        !ran.merged.contains(&owner_token),
        "the token was printed: {ran}"
    );

    // --identity: the service's managed identity for a principal; one without a role is
    // refused with ARM's denial.
    let mut a = args("b:v1");
    a.extend(["--identity", "--object-id", OWNER].map(String::from));
    let ran = run_plain(cmd(&a), false).await;
    assert_eq!(ran.code, Some(0), "{ran}");
    let mut a = args("c:v1");
    a.extend(
        [
            "--identity",
            "--object-id",
            "99999999-9999-4999-8999-999999999999",
            "-g",
            &env.rg,
        ]
        .map(String::from),
    );
    let ran = run_plain(cmd(&a), false).await;
    assert_eq!(ran.code, Some(1), "{ran}");
    assert!(ran.merged.contains("AuthorizationFailed"), "{ran}");
    let backend = env.backend_client();
    backend
        .assert_has_image(&target("a"), Some("v1"), &image)
        .await;
    backend
        .assert_has_image(&target("b"), Some("v1"), &image)
        .await;
}
