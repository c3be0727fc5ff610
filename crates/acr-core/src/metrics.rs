//! Every metric of acr-import: its name, its labels and what moves it, in one place.
//!
//! Recorded through the `metrics` facade: the library crates call these functions and know
//! nothing of the exporter; the binary installs the Prometheus recorder (and calls
//! [`describe`]), and without one (unit tests, other embedders) every call is a no-op.
//!
//! Names follow Prometheus conventions under the prefix `acr_import_`: base units (seconds,
//! bytes), `_total` counters. Labels are **bounded by construction**: every label value is an
//! enum variant, a `&'static str` from a fixed set (an operation kind, an ARM error code, a
//! route template) or a number class, never an operation id, subscription, registry,
//! repository or host. A value that is not a `'static` string is turned into one of a fixed
//! set here ([`method_label`], [`status_class`]).

use std::time::Duration;

use ::metrics::{counter, gauge, histogram, Unit};

/// `acr_import_build_info{version}`: 1.
pub const BUILD_INFO: &str = "acr_import_build_info";

/// `acr_import_operations_enqueued_total{kind, outcome, limit}`.
pub const OPERATIONS_ENQUEUED: &str = "acr_import_operations_enqueued_total";
/// `acr_import_operations_finished_total{kind, status, code}`.
pub const OPERATIONS_FINISHED: &str = "acr_import_operations_finished_total";
/// `acr_import_queue_operations{state}` (read from the store at each scrape).
pub const QUEUE_OPERATIONS: &str = "acr_import_queue_operations";
/// `acr_import_queue_oldest_queued_age_seconds` (read from the store at each scrape).
pub const QUEUE_OLDEST_AGE: &str = "acr_import_queue_oldest_queued_age_seconds";
/// `acr_import_queue_scrape_errors_total`: the store did not answer a scrape's count.
pub const QUEUE_SCRAPE_ERRORS: &str = "acr_import_queue_scrape_errors_total";
/// `acr_import_operation_queue_wait_seconds{kind}` (histogram).
pub const QUEUE_WAIT: &str = "acr_import_operation_queue_wait_seconds";
/// `acr_import_operation_run_duration_seconds{kind, status}` (histogram).
pub const RUN_DURATION: &str = "acr_import_operation_run_duration_seconds";
/// `acr_import_operation_claims_total{kind}`: attempts started.
pub const CLAIMS: &str = "acr_import_operation_claims_total";
/// `acr_import_operation_reclaims_total{kind}`: claims of a running operation whose lease expired.
pub const RECLAIMS: &str = "acr_import_operation_reclaims_total";
/// `acr_import_operation_leases_lost_total{kind}`.
pub const LEASES_LOST: &str = "acr_import_operation_leases_lost_total";
/// `acr_import_operation_releases_total{kind, reason}`.
pub const RELEASES: &str = "acr_import_operation_releases_total";

/// `acr_import_copy_blobs_total{result}`.
pub const COPY_BLOBS: &str = "acr_import_copy_blobs_total";
/// `acr_import_copy_blob_bytes_total{result}`.
pub const COPY_BLOB_BYTES: &str = "acr_import_copy_blob_bytes_total";
/// `acr_import_copy_manifests_total{result}`.
pub const COPY_MANIFESTS: &str = "acr_import_copy_manifests_total";
/// `acr_import_copy_range_resumes_total`.
pub const COPY_RANGE_RESUMES: &str = "acr_import_copy_range_resumes_total";
/// `acr_import_copy_stalls_total{side}`.
pub const COPY_STALLS: &str = "acr_import_copy_stalls_total";
/// `acr_import_copy_transfers_in_flight` (gauge).
pub const COPY_TRANSFERS_IN_FLIGHT: &str = "acr_import_copy_transfers_in_flight";
/// `acr_import_registry_requests_total{role, class}`.
pub const REGISTRY_REQUESTS: &str = "acr_import_registry_requests_total";

/// `acr_import_builtin_registry_disk_bytes{kind}` (content, uploads).
pub const BUILTIN_DISK_BYTES: &str = "acr_import_builtin_registry_disk_bytes";
/// `acr_import_builtin_registry_content_files`.
pub const BUILTIN_CONTENT_FILES: &str = "acr_import_builtin_registry_content_files";

/// `acr_import_http_requests_total{listener, route, method, status}`.
pub const HTTP_REQUESTS: &str = "acr_import_http_requests_total";
/// `acr_import_http_request_duration_seconds{listener, route, method}` (histogram).
pub const HTTP_DURATION: &str = "acr_import_http_request_duration_seconds";

/// Buckets of the queue wait and run duration histograms: 50 ms to an hour.
pub const OPERATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
    3600.0,
];
/// Buckets of the HTTP duration histogram: 1 ms to a minute.
pub const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The histograms and their buckets (the exporter renders each as a histogram, not a summary).
pub const HISTOGRAMS: &[(&str, &[f64])] = &[
    (QUEUE_WAIT, OPERATION_BUCKETS),
    (RUN_DURATION, OPERATION_BUCKETS),
    (HTTP_DURATION, HTTP_BUCKETS),
];

/// Label value for "no ARM code" (a success).
pub const NO_CODE: &str = "none";
/// Route label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Registers the help text of every metric (call once, after installing the recorder).
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which build runs."
    );
    describe_counter!(
        OPERATIONS_ENQUEUED,
        "Operations asked for (importImage, registry and resource group deletions): outcome accepted, repeated (same client request id: the existing operation answered) or rejected (a queue limit, named by limit)."
    );
    describe_counter!(
        OPERATIONS_FINISHED,
        "Operations that ended, by kind, status (succeeded, failed, canceled) and ARM error code (none on success)."
    );
    describe_gauge!(
        QUEUE_OPERATIONS,
        "Unfinished operations in the shared queue by state (queued, running), counted in the store at scrape time."
    );
    describe_gauge!(
        QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "How long the longest-waiting runnable queued operation has waited (0 when none), from the store at scrape time."
    );
    describe_counter!(
        QUEUE_SCRAPE_ERRORS,
        "Scrapes whose queue count the store did not answer in time (the queue gauges kept their last values)."
    );
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "Time from an operation's enqueue to its first claim by a worker."
    );
    describe_histogram!(
        RUN_DURATION,
        Unit::Seconds,
        "Time from an operation's first claim to its end, for operations a worker ended."
    );
    describe_counter!(
        CLAIMS,
        "Attempts started: each claim of an operation by a worker."
    );
    describe_counter!(
        RECLAIMS,
        "Claims of a running operation whose lease had expired (its worker died or stopped renewing)."
    );
    describe_counter!(
        LEASES_LOST,
        "Attempts abandoned because their lease was lost (refused or not renewed in time)."
    );
    describe_counter!(
        RELEASES,
        "Operations given back to the queue by their worker: reason retry (a transient failure) or shutdown."
    );
    describe_counter!(
        COPY_BLOBS,
        "Blobs of imports by result: copied (transferred), skipped (already in the target repository), mounted (from another repository of the target registry), failed."
    );
    describe_counter!(
        COPY_BLOB_BYTES,
        Unit::Bytes,
        "Bytes of the blobs counted by acr_import_copy_blobs_total, by result (copied, skipped, mounted)."
    );
    describe_counter!(
        COPY_MANIFESTS,
        "Manifests of imports by result: copied (pushed by digest) or skipped (already in the target repository, with everything under them)."
    );
    describe_counter!(
        COPY_RANGE_RESUMES,
        "Blob downloads resumed with a Range request after a broken or stalled connection."
    );
    describe_counter!(
        COPY_STALLS,
        "Transfers that went silent for the stall timeout, by side (source: no byte of the download; target: the registry took no byte or gave no answer)."
    );
    describe_gauge!(
        COPY_TRANSFERS_IN_FLIGHT,
        "Blob transfers moving bytes now (source to target), in this process."
    );
    describe_counter!(
        REGISTRY_REQUESTS,
        "HTTP requests acr-import sent to registries (each exchange: challenges, token requests and retries included) by role (source: a registry imported from; target: the backend holding the emulated registries, written by imports and reached by the login servers' pass-through) and status class (2xx, 3xx, 4xx, 5xx, error: no answer)."
    );
    describe_gauge!(
        BUILTIN_DISK_BYTES,
        Unit::Bytes,
        "Disk used by the built-in registry, by kind (content: blobs and manifests, each stored once; uploads: upload sessions in progress); measured every 10 s."
    );
    describe_gauge!(
        BUILTIN_CONTENT_FILES,
        "Content files (blobs and manifests) the built-in registry stores; measured every 10 s."
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests served, by listener (arm, registry, metrics), route template, method and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to the response head of HTTP requests served, by listener, route template and method."
    );
}

/// Sets `acr_import_build_info{version}` to 1.
pub fn build_info(version: &'static str) {
    gauge!(BUILD_INFO, "version" => version).set(1.0);
}

/// How an enqueue ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueue {
    Accepted,
    /// The same operation was asked for again (client request id): it was answered as it is.
    Repeated,
    /// Refused by the per-subscription limit.
    RejectedSubscription,
    /// Refused by the limit of the whole queue.
    RejectedQueue,
}

/// One enqueue of an operation of `kind`.
pub fn operation_enqueued(kind: &'static str, how: Enqueue) {
    let (outcome, limit) = match how {
        Enqueue::Accepted => ("accepted", "none"),
        Enqueue::Repeated => ("repeated", "none"),
        Enqueue::RejectedSubscription => ("rejected", "subscription"),
        Enqueue::RejectedQueue => ("rejected", "queue"),
    };
    counter!(OPERATIONS_ENQUEUED, "kind" => kind, "outcome" => outcome, "limit" => limit)
        .increment(1);
}

/// How an operation ended, for the `status` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Succeeded,
    Failed,
    Canceled,
}

impl Ended {
    fn label(self) -> &'static str {
        match self {
            Ended::Succeeded => "succeeded",
            Ended::Failed => "failed",
            Ended::Canceled => "canceled",
        }
    }
}

/// `count` operations of `kind` ended with `status` and ARM `code` ([`NO_CODE`] for none).
pub fn operations_finished(kind: &'static str, status: Ended, code: &'static str, count: u64) {
    counter!(OPERATIONS_FINISHED, "kind" => kind, "status" => status.label(), "code" => code)
        .increment(count);
}

/// The run duration of an operation a worker ended.
pub fn run_duration(kind: &'static str, status: Ended, took: Duration) {
    histogram!(RUN_DURATION, "kind" => kind, "status" => status.label()).record(took.as_secs_f64());
}

/// A claim: every attempt; `first` with the wait since the enqueue; `reclaimed` when the
/// operation was running under an expired lease.
pub fn operation_claimed(kind: &'static str, first: Option<Duration>, reclaimed: bool) {
    counter!(CLAIMS, "kind" => kind).increment(1);
    if reclaimed {
        counter!(RECLAIMS, "kind" => kind).increment(1);
    }
    if let Some(wait) = first {
        histogram!(QUEUE_WAIT, "kind" => kind).record(wait.as_secs_f64());
    }
}

/// An attempt abandoned because its lease was lost.
pub fn lease_lost(kind: &'static str) {
    counter!(LEASES_LOST, "kind" => kind).increment(1);
}

/// Why a worker gave an operation back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Retry,
    Shutdown,
}

/// An operation given back to the queue.
pub fn operation_released(kind: &'static str, why: Release) {
    let reason = match why {
        Release::Retry => "retry",
        Release::Shutdown => "shutdown",
    };
    counter!(RELEASES, "kind" => kind, "reason" => reason).increment(1);
}

/// The shared queue as the store counts it (set at each scrape).
pub fn queue_gauges(queued: u64, running: u64, oldest_queued_age: Duration) {
    gauge!(QUEUE_OPERATIONS, "state" => "queued").set(queued as f64);
    gauge!(QUEUE_OPERATIONS, "state" => "running").set(running as f64);
    gauge!(QUEUE_OLDEST_AGE).set(oldest_queued_age.as_secs_f64());
}

/// The built-in registry's disk usage.
pub fn builtin_disk(content_bytes: u64, content_files: u64, upload_bytes: u64) {
    gauge!(BUILTIN_DISK_BYTES, "kind" => "content").set(content_bytes as f64);
    gauge!(BUILTIN_DISK_BYTES, "kind" => "uploads").set(upload_bytes as f64);
    gauge!(BUILTIN_CONTENT_FILES).set(content_files as f64);
}

/// A scrape whose queue count the store did not answer.
pub fn queue_scrape_failed() {
    counter!(QUEUE_SCRAPE_ERRORS).increment(1);
}

/// How one blob of a copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobResult {
    Copied,
    Skipped,
    Mounted,
    Failed,
}

/// One blob of `size` bytes done (a failed one counts no bytes).
pub fn blob(result: BlobResult, size: u64) {
    let label = match result {
        BlobResult::Copied => "copied",
        BlobResult::Skipped => "skipped",
        BlobResult::Mounted => "mounted",
        BlobResult::Failed => "failed",
    };
    counter!(COPY_BLOBS, "result" => label).increment(1);
    if result != BlobResult::Failed {
        counter!(COPY_BLOB_BYTES, "result" => label).increment(size);
    }
}

/// Manifests pushed by digest (`copied`) or found in the target (`skipped`).
pub fn manifests(copied: bool, count: u64) {
    let result = if copied { "copied" } else { "skipped" };
    counter!(COPY_MANIFESTS, "result" => result).increment(count);
}

/// A blob download resumed with `Range`.
pub fn range_resume() {
    counter!(COPY_RANGE_RESUMES).increment(1);
}

/// Which end of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

/// A transfer that went silent for the stall timeout.
pub fn stall(side: Side) {
    counter!(COPY_STALLS, "side" => side.label()).increment(1);
}

/// One HTTP exchange with a registry: its status, or `None` when no answer came.
pub fn registry_request(role: Side, status: Option<u16>) {
    let class = status.map_or("error", status_class);
    counter!(REGISTRY_REQUESTS, "role" => role.label(), "class" => class).increment(1);
}

/// A blob transfer moving bytes: counted in `acr_import_copy_transfers_in_flight` while alive.
#[derive(Debug)]
pub struct TransferInFlight(());

impl TransferInFlight {
    pub fn start() -> Self {
        gauge!(COPY_TRANSFERS_IN_FLIGHT).increment(1.0);
        Self(())
    }
}

impl Drop for TransferInFlight {
    fn drop(&mut self) {
        gauge!(COPY_TRANSFERS_IN_FLIGHT).decrement(1.0);
    }
}

/// Which listener served an HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The ARM API (plain and HTTPS).
    Arm,
    /// The login servers (plain and HTTPS).
    Registry,
    /// `--metrics-listen`.
    Metrics,
}

impl Listener {
    fn label(self) -> &'static str {
        match self {
            Listener::Arm => "arm",
            Listener::Registry => "registry",
            Listener::Metrics => "metrics",
        }
    }
}

/// One HTTP request served. `route` is a route template (or [`UNMATCHED_ROUTE`]): one of the
/// routes the routers declare, so the set is fixed by the code.
pub fn http_request(
    listener: Listener,
    route: impl Into<::metrics::SharedString>,
    method: &str,
    status: u16,
    took: Duration,
) {
    let route = route.into();
    let method = method_label(method);
    counter!(HTTP_REQUESTS,
        "listener" => listener.label(),
        "route" => route.clone(),
        "method" => method,
        "status" => status_label(status))
    .increment(1);
    histogram!(HTTP_DURATION,
        "listener" => listener.label(),
        "route" => route,
        "method" => method)
    .record(took.as_secs_f64());
}

/// The method as a label: one of the methods the service knows, else `other` (a client may
/// send any token as a method).
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

/// `2xx`, `3xx`, `4xx`, `5xx` (`1xx` and anything else: `other`).
pub fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// A status code as a label (`100`…`599`; anything else `other`).
fn status_label(status: u16) -> ::metrics::SharedString {
    if (100..=599).contains(&status) {
        ::metrics::SharedString::from(status.to_string())
    } else {
        ::metrics::SharedString::const_str("other")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("BREW"), "other");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(99), "other");
        assert_eq!(&*status_label(429), "429");
        assert_eq!(&*status_label(1000), "other");
    }

    #[test]
    fn without_a_recorder_recording_is_a_no_op() {
        build_info("0.0.0");
        http_request(
            Listener::Arm,
            "/health",
            "GET",
            200,
            Duration::from_millis(1),
        );
        let guard = TransferInFlight::start();
        drop(guard);
        blob(BlobResult::Copied, 10);
    }

    #[test]
    fn every_histogram_has_buckets_up_to_an_hour_for_operations() {
        assert_eq!(OPERATION_BUCKETS.last(), Some(&3600.0));
        assert!(OPERATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert!(HTTP_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(HISTOGRAMS.len(), 3);
    }
}
