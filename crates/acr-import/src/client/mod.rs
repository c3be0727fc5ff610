//! `acr-import import`: the project's own client of a running service's ARM API. It does what
//! `az acr import` does (finds the target registry's subscription and resource group, POSTs
//! `importImage`) and then follows the operation's `Azure-AsyncOperation` URL with a live
//! progress display from the status document's `properties` (acr-import's progress
//! extension). `--file` submits many imports and follows them at once.
//!
//! It is a client like any other: HTTP only (`arm`), no store, no shared code path with the
//! service beyond acr-core's wire types and the validation rules of an import body (`plan`
//! checks every input with them before anything is sent). The source password goes into the
//! request body and nowhere else: not into messages, not into `Debug` output.

mod arm;
mod plan;
mod progress;

use std::process::ExitCode;
use std::time::Duration;

use acr_core::arm::RegistryId;
use secrecy::{ExposeSecret as _, SecretString};

use crate::config::ImportArgs;
use arm::{Arm, ArmError, Polled, Posted, Terminal};
use plan::{Common, Job, SourceCredentials, SourceRegistry};
use progress::{Display, Tracker};

/// How often a running operation's status is read (at most; a shorter `Retry-After` is
/// honoured): often enough for a live bar.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Never faster than this, whatever `Retry-After` says (`0` included).
const POLL_MIN: Duration = Duration::from_millis(100);
/// Transient failures (no answer, 429, 5xx) in a row before a POST or a poll gives up.
const MAX_TRANSIENT: u32 = 8;

/// Why the command stopped before following anything.
#[derive(Debug)]
enum Stop {
    /// A bad argument or `--file` line (exit 2).
    Usage(String),
    /// The service could not be asked, or refused (exit 1).
    Failed(String),
}

impl From<ArmError> for Stop {
    fn from(e: ArmError) -> Self {
        Stop::Failed(e.to_string())
    }
}

/// Runs the command; the exit code says how it went.
pub async fn run(args: ImportArgs) -> ExitCode {
    match import(args).await {
        Ok(code) => code,
        Err(Stop::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(Stop::Failed(m)) => {
            eprintln!("error: {m}");
            ExitCode::FAILURE
        }
    }
}

async fn import(args: ImportArgs) -> Result<ExitCode, Stop> {
    let usage = |e: &dyn std::fmt::Display| Stop::Usage(e.to_string());
    acr_core::arm::validate_registry_name(&args.registry)
        .map_err(|e| Stop::Usage(format!("--registry: {e}")))?;
    let subscription = args
        .subscription
        .as_deref()
        .map(acr_core::arm::validate_subscription)
        .transpose()
        .map_err(|e| Stop::Usage(format!("--subscription: {e}")))?;
    if let Some(rg) = &args.resource_group {
        acr_core::arm::validate_resource_group(rg)
            .map_err(|e| Stop::Usage(format!("--resource-group: {e}")))?;
    }
    let credentials = credentials(&args)?;
    let file_text = match &args.file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| Stop::Usage(format!("--file: cannot read {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let ca_pem =
        match &args.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                Stop::Usage(format!("--ca-file: cannot read {}: {e}", path.display()))
            })?),
            None => None,
        };
    let common = |source_registry: SourceRegistry| Common {
        source_registry,
        credentials: credentials.clone(),
        force: args.force,
    };
    let jobs_for = |c: &Common| -> Result<Vec<Job>, Stop> {
        match &file_text {
            Some(text) => plan::from_file(c, text).map_err(|bad| {
                let lines: Vec<String> = bad.iter().map(|b| format!("  {b}")).collect();
                Stop::Usage(format!(
                    "--file {}: {} bad line(s), nothing was imported:\n{}",
                    args.file
                        .as_deref()
                        .unwrap_or(std::path::Path::new(""))
                        .display(),
                    bad.len(),
                    lines.join("\n")
                ))
            }),
            None => {
                let source = args.source.as_deref().unwrap_or_default();
                plan::single(c, source, &args.images, &args.repositories)
                    .map(|j| vec![j])
                    .map_err(|e| Stop::Usage(format!("bad reference: {e}")))
            }
        }
    };
    // Everything that can be checked without the service is checked first; a source
    // registry given by name is resolved below.
    let source_by_id = match args.source_registry.as_deref() {
        None => Some(SourceRegistry::FromSource),
        Some(id) if id.starts_with('/') => {
            RegistryId::parse(id).map_err(|e| Stop::Usage(format!("--source-registry: {e}")))?;
            Some(SourceRegistry::ResourceId(id.to_owned()))
        }
        Some(_) => None,
    };
    let early_jobs = source_by_id.map(|s| jobs_for(&common(s))).transpose()?;

    let mut arm = Arm::new(&args.endpoint, ca_pem).map_err(|e| usage(&e))?;
    if let Some(t) = &args.token {
        arm.set_token(t.clone());
    } else if args.identity {
        let token = arm
            .identity_token(args.object_id.as_deref())
            .await
            .map_err(|e| Stop::Failed(format!("--identity: {e}")))?;
        arm.set_token(token);
    }
    let finder = Finder::new(&arm, subscription).await?;
    let target = match &args.resource_group {
        Some(rg) => RegistryId::new(&finder.subscription, rg, &args.registry)
            .map_err(|e| Stop::Usage(e.to_string()))?,
        None => finder.target(&args.registry).await?,
    };
    let jobs = match early_jobs {
        Some(jobs) => jobs,
        None => {
            let name = args.source_registry.as_deref().unwrap_or_default();
            let id = finder.source(name).await?;
            jobs_for(&common(SourceRegistry::ResourceId(id)))?
        }
    };

    let labels: Vec<&str> = jobs.iter().map(|j| j.label.as_str()).collect();
    let display = if args.no_wait {
        Display::new(false, &labels)
    } else {
        Display::detect(&labels)
    };
    let many = args.file.is_some();
    let explicit_group = args.resource_group.is_some();

    // Submit every import, in order; then follow the accepted ones together.
    let mut outcomes: Vec<Option<Result<(), String>>> = Vec::with_capacity(jobs.len());
    let mut following = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let mut tracker = display.track(&job.label);
        match submit(&arm, &target, job).await {
            Err(e) => {
                let why = explain(&arm, &target, explicit_group, &e);
                tracker.failed("Failed", &why);
                outcomes.push(Some(Err(why)));
            }
            Ok(Posted::Done) => {
                tracker.succeeded(None);
                outcomes.push(Some(Ok(())));
            }
            Ok(Posted::Accepted {
                status_url,
                location,
            }) => {
                let (url, is_status) = match (status_url, location) {
                    (Some(s), _) => (s, true),
                    (None, Some(l)) => (l, false),
                    // (`import_image` refuses a 202 without either.)
                    (None, None) => {
                        let why = "the service accepted the import without a URL to follow it";
                        tracker.failed("Unknown", why);
                        outcomes.push(Some(Err(why.to_owned())));
                        continue;
                    }
                };
                tracker.accepted(operation_name(&url));
                if args.no_wait {
                    if many {
                        println!("{} {url}", job.label);
                    } else {
                        println!("{url}");
                    }
                    outcomes.push(Some(Ok(())));
                } else {
                    outcomes.push(None);
                    following.push((i, url, is_status, tracker));
                }
            }
        }
    }

    let urls: Vec<String> = following.iter().map(|f| f.1.clone()).collect();
    let follow_all = futures::future::join_all(following.into_iter().map(
        |(i, url, is_status, mut tracker)| {
            let arm = &arm;
            async move {
                let outcome = follow(arm, &url, is_status, &mut tracker).await;
                (i, outcome)
            }
        },
    ));
    tokio::select! {
        done = follow_all => {
            for (i, outcome) in done {
                if let Some(slot) = outcomes.get_mut(i) {
                    *slot = Some(outcome);
                }
            }
        }
        _ = tokio::signal::ctrl_c() => {
            display.note("interrupted: the imports go on in the service; their status URLs:");
            for u in &urls {
                display.note(&format!("  {u}"));
            }
            return Ok(ExitCode::from(130));
        }
    }

    let failed: Vec<(&Job, &String)> = jobs
        .iter()
        .zip(&outcomes)
        .filter_map(|(j, o)| match o {
            Some(Err(why)) => Some((j, why)),
            _ => None,
        })
        .collect();
    if many {
        let ok = jobs.len() - failed.len();
        let verb = if args.no_wait {
            "accepted"
        } else {
            "succeeded"
        };
        println!(
            "{} imports: {ok} {verb}, {} failed",
            jobs.len(),
            failed.len()
        );
        for (job, why) in &failed {
            match &job.line {
                Some((n, text)) => println!("  line {n} ({text}): {why}"),
                None => println!("  {}: {why}", job.label),
            }
        }
    } else if let Some((_, why)) = failed.first() {
        // The bar shows the start of it; the whole error goes below.
        if display.is_live() {
            eprintln!("error: {why}");
        }
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `-u` / `-p` as `az acr import` takes them: a password alone is an access token.
fn credentials(args: &ImportArgs) -> Result<Option<SourceCredentials>, Stop> {
    let password = args
        .password
        .as_ref()
        .filter(|p| !p.expose_secret().is_empty());
    match (&args.username, password) {
        (Some(_), None) => Err(Stop::Usage(
            "--username needs a password: -p/--password or ACR_IMPORT_SOURCE_PASSWORD".into(),
        )),
        (username, Some(p)) => Ok(Some(SourceCredentials {
            username: username.clone().filter(|u| !u.is_empty()),
            password: SecretString::from(p.expose_secret().to_owned()),
        })),
        (None, None) => Ok(None),
    }
}

/// The subscription, and the registries in it (listed once, when needed).
struct Finder<'a> {
    arm: &'a Arm,
    subscription: String,
    /// The subscription was the service's default, not `--subscription`.
    defaulted: bool,
    listed: tokio::sync::OnceCell<Vec<arm::ListedRegistry>>,
}

impl<'a> Finder<'a> {
    async fn new(arm: &'a Arm, subscription: Option<String>) -> Result<Self, Stop> {
        let (subscription, defaulted) = match subscription {
            Some(s) => (s, false),
            None => {
                let all = arm
                    .subscriptions()
                    .await
                    .map_err(|e| explain_plain(arm, &e))?;
                let first = all.into_iter().next().ok_or_else(|| {
                    Stop::Failed(format!(
                        "the service at {} lists no subscription: pass --subscription",
                        arm.endpoint()
                    ))
                })?;
                (first, true)
            }
        };
        Ok(Self {
            arm,
            subscription,
            defaulted,
            listed: tokio::sync::OnceCell::new(),
        })
    }

    async fn registries(&self) -> Result<&[arm::ListedRegistry], Stop> {
        self.listed
            .get_or_try_init(|| self.arm.registries(&self.subscription))
            .await
            .map(Vec::as_slice)
            .map_err(|e| explain_plain(self.arm, &e))
    }

    async fn find(&self, name: &str) -> Result<Option<arm::ListedRegistry>, Stop> {
        Ok(self
            .registries()
            .await?
            .iter()
            .find(|r| r.id.name.eq_ignore_ascii_case(name))
            .cloned())
    }

    /// The target registry's id, its resource group found by listing the subscription.
    async fn target(&self, name: &str) -> Result<RegistryId, Stop> {
        if let Some(r) = self.find(name).await? {
            return Ok(r.id);
        }
        Err(Stop::Failed(self.not_found(name).await))
    }

    /// A source registry named with --source-registry NAME: its resource id.
    async fn source(&self, name: &str) -> Result<String, Stop> {
        acr_core::arm::validate_registry_name(name)
            .map_err(|e| Stop::Usage(format!("--source-registry: {e}")))?;
        match self.find(name).await? {
            Some(r) => Ok(r.arm_id),
            None => Err(Stop::Failed(format!(
                "--source-registry: {}",
                self.not_found(name).await
            ))),
        }
    }

    /// "Registry not found", with where it is when another subscription of the service has it.
    async fn not_found(&self, name: &str) -> String {
        let mut msg = format!(
            "registry '{name}' was not found in subscription {}{}",
            self.subscription,
            if self.defaulted {
                " (the service's default subscription)"
            } else {
                ""
            }
        );
        if let Ok(all) = self.arm.subscriptions().await {
            for sub in all.iter().filter(|s| **s != self.subscription) {
                let Ok(regs) = self.arm.registries(sub).await else {
                    continue;
                };
                if let Some(r) = regs.iter().find(|r| r.id.name.eq_ignore_ascii_case(name)) {
                    msg.push_str(&format!(
                        "; it is in subscription {sub}, resource group {}: add --subscription {sub}",
                        r.id.resource_group
                    ));
                    return msg;
                }
            }
        }
        msg.push_str(
            " (create it first: PUT …/registries/{name}, see the README's walk-through, or `az acr create`)",
        );
        msg
    }
}

/// POSTs one import; transient failures (no answer, 429, 5xx) are retried with the same
/// `x-ms-client-request-id`, so a POST that did arrive yields the same operation.
async fn submit(arm: &Arm, target: &RegistryId, job: &Job) -> Result<Posted, ArmError> {
    let request_id = uuid::Uuid::new_v4();
    let mut tries = 0;
    loop {
        match arm
            .import_image(target, job.body.to_json(), &request_id)
            .await
        {
            Err(e) if e.is_transient() && tries < MAX_TRANSIENT => {
                tries += 1;
                tokio::time::sleep(backoff(tries, e.retry_after())).await;
            }
            other => return other,
        }
    }
}

/// Follows one operation to its end; `Err` carries `Code: message`.
async fn follow(
    arm: &Arm,
    url: &str,
    is_status: bool,
    tracker: &mut Tracker,
) -> Result<(), String> {
    let mut transient = 0;
    loop {
        let wait = match arm.poll(url, is_status).await {
            Ok(Polled::Status { doc, retry_after }) => {
                transient = 0;
                let progress = doc.progress();
                match doc.terminal() {
                    Some(Terminal::Succeeded) => {
                        tracker.succeeded(progress.as_ref());
                        return Ok(());
                    }
                    Some(end) => {
                        let outcome = if end == Terminal::Canceled {
                            "Canceled"
                        } else {
                            "Failed"
                        };
                        let why = match &doc.error {
                            Some(e) => format!("{}: {}", e.code, e.message),
                            None => format!("the operation {} ended {outcome}", doc.name),
                        };
                        tracker.failed(outcome, &why);
                        return Err(why);
                    }
                    None => {
                        tracker.update(&doc.status, progress.as_ref());
                        poll_wait(retry_after)
                    }
                }
            }
            Ok(Polled::Running { retry_after }) => {
                transient = 0;
                tracker.update("InProgress", None);
                poll_wait(retry_after)
            }
            Ok(Polled::Done) => {
                tracker.succeeded(None);
                return Ok(());
            }
            // The Location URL answers a failed operation with its ARM error.
            Err(e @ ArmError::Status { .. }) if !is_status && !e.is_transient() => {
                let why = e.to_string();
                tracker.failed("Failed", &why);
                return Err(why);
            }
            Err(e) if e.is_transient() && transient < MAX_TRANSIENT => {
                transient += 1;
                backoff(transient, e.retry_after())
            }
            Err(e) => {
                let why = format!(
                    "lost track of the operation ({}); it may still be running: {url}",
                    explain_text(arm, &e)
                );
                tracker.failed("Unknown", &why);
                return Err(why);
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// The wait before the next poll of a running operation: its `Retry-After`, but no longer
/// than [`POLL_EVERY`] (a live bar) and no shorter than [`POLL_MIN`].
fn poll_wait(retry_after: Option<Duration>) -> Duration {
    retry_after
        .unwrap_or(POLL_EVERY)
        .clamp(POLL_MIN, POLL_EVERY)
}

/// After the `n`th transient failure: the answer's `Retry-After`, else 0.5 s doubling to 8 s.
fn backoff(n: u32, retry_after: Option<Duration>) -> Duration {
    retry_after.unwrap_or_else(|| {
        Duration::from_millis(500u64.saturating_mul(1 << n.saturating_sub(1).min(4)))
    })
}

/// `registries-<guid>` from a status or Location URL.
fn operation_name(url: &str) -> &str {
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

/// An error of the import POST in words a user can act on.
fn explain(arm: &Arm, target: &RegistryId, explicit_group: bool, e: &ArmError) -> String {
    match e {
        ArmError::Status { status, .. } if status.as_u16() == 404 && explicit_group => {
            format!(
                "registry '{}' was not found in resource group '{}' of subscription {} ({e})",
                target.name, target.resource_group, target.subscription
            )
        }
        _ => explain_text(arm, e),
    }
}

fn explain_plain(arm: &Arm, e: &ArmError) -> Stop {
    Stop::Failed(explain_text(arm, e))
}

/// An ARM error, with what to do about a refused or missing token.
fn explain_text(arm: &Arm, e: &ArmError) -> String {
    match e.status().map(|s| s.as_u16()) {
        Some(401) if !arm.has_token() => format!(
            "{e} (the service requires a bearer token: it runs with --auth arm-rbac; pass \
             --token or ACR_IMPORT_TOKEN, or --identity for a token of the service's managed identity)"
        ),
        Some(401) => format!("{e} (the service refused the bearer token)"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_is_live_and_honours_short_retry_after() {
        assert_eq!(poll_wait(None), POLL_EVERY);
        assert_eq!(poll_wait(Some(Duration::from_secs(1))), POLL_EVERY);
        assert_eq!(poll_wait(Some(Duration::ZERO)), POLL_MIN);
        assert_eq!(
            poll_wait(Some(Duration::from_millis(200))),
            Duration::from_millis(200)
        );
        assert_eq!(backoff(1, None), Duration::from_millis(500));
        assert_eq!(backoff(3, None), Duration::from_secs(2));
        assert_eq!(backoff(20, None), Duration::from_secs(8));
        assert_eq!(
            backoff(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn operation_names() {
        assert_eq!(
            operation_name("http://h/subscriptions/s/providers/P/locations/eastus/operationStatuses/registries-1?api-version=2025-11-01"),
            "registries-1"
        );
    }
}
