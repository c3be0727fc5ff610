//! The emulator's own operations feed, under [`PREFIX`]: the operations newest first, paged
//! and filtered (`GET /_acr-import/operations`), and their changes as Server-Sent Events
//! (`GET /_acr-import/operations/events`: `created`, `progress`, `finished`, each with the
//! operation as the list shows it and its change number as the event id, so `Last-Event-ID`
//! resumes). For portal-like frontends, which would otherwise poll every operation.
//!
//! Authorized like ARM reads: in `--auth arm-rbac` a token is required (the caller is
//! identified as for `/subscriptions`) and only operations on registries the caller may read
//! (`Microsoft.ContainerRegistry/registries/read` on the registry) are shown. Operations past
//! `--operation-retention-seconds` are not shown (their URLs answer 404). Credentials are
//! never shown: the store does not select them.

use std::convert::Infallible;
use std::time::Duration;

use acr_core::operation::OperationState;
use acr_core::wire::ImportProgress;
use acr_store::{FeedRow, OperationFilter, PageKey};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::Stream;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::{AuthMode, Caller};
use crate::error::ApiError;
use crate::{AppState, ListenerScheme};

/// Where the emulator's own API lives (never an ARM path).
pub const PREFIX: &str = "/_acr-import";

/// The largest page.
pub(crate) const MAX_TOP: u32 = 200;
/// `registry`: empty (no filter) or a registry name.
pub(crate) const REGISTRY_FILTER_PATTERN: &str = "^(?:[a-zA-Z0-9]{5,50})?$";
/// `state`: empty (no filter) or a state (any case is accepted; the document lists these).
pub(crate) const STATE_FILTERS: &[&str] =
    &["", "Queued", "Running", "Succeeded", "Failed", "Canceled"];
/// `skipToken`: empty, or `<microseconds since the epoch>_<operation id>` (what a `nextLink`
/// carries); the list matches it before it parses it.
/// (A time after 1970 and before the year 30,000; an id without NUL: what PostgreSQL can compare.)
pub(crate) const SKIP_TOKEN_PATTERN: &str = r"^(?:[0-9]{1,18}_[^\x00]{1,100})?$";
/// `Last-Event-ID` / `lastEventId`: empty (from now on) or an event id.
pub(crate) const EVENT_ID_PATTERN: &str = "^[0-9]{0,18}$";

static SKIP_TOKEN: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(SKIP_TOKEN_PATTERN).expect("static regex"));
/// How often the event stream looks for changes (the store is the correctness path).
const POLL: Duration = Duration::from_millis(250);
/// Rows read per store call while filtering by permission.
const BATCH: u32 = 200;
/// Batches one page may read while skipping operations the caller may not see.
const MAX_BATCHES: usize = 20;

const READ: &str = "Microsoft.ContainerRegistry/registries/read";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_operations))
        .routes(routes!(operation_events))
}

/// The target registry of an operation.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedRegistry {
    /// The registry's ARM resource id.
    pub id: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
}

/// The source of an import, as the request gave it (never its credentials).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    pub source_image: String,
}

/// An error of a failed (or cancelled) operation, in full.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FeedError {
    pub code: String,
    pub message: String,
}

/// One operation of the feed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedOperation {
    /// `registries-<guid>`.
    pub id: String,
    /// `import`, `deleteRegistry` or `deleteResourceGroup`.
    pub kind: String,
    pub registry: FeedRegistry,
    /// Imports only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<FeedSource>,
    pub target_tags: Vec<String>,
    pub untagged_target_repositories: Vec<String>,
    /// `Force` or `NoForce` (imports only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// As the Azure-AsyncOperation URL says it: `InProgress`, `Succeeded`, `Failed`, `Canceled`.
    pub status: String,
    /// The queue's state: `Queued`, `Running`, `Succeeded`, `Failed`, `Canceled`.
    pub state: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    pub percent_complete: f64,
    pub progress: Option<ImportProgress>,
    pub error: Option<FeedError>,
    /// The operation's Azure-AsyncOperation URL.
    pub status_url: String,
    /// The operation's Location URL.
    pub result_url: String,
    /// Its position in the change sequence (the event id of its last change).
    pub change_seq: i64,
}

/// A page of the feed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedPage {
    pub value: Vec<FeedOperation>,
    /// The next page, when there may be one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

fn item(base: &str, row: FeedRow) -> FeedOperation {
    let rec = row.record;
    let (result_url, status_url) = crate::urls::operation_urls(base, &rec);
    let st = rec.state().ok();
    let req = &row.request.0;
    let text = |k: &str| req.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let list = |k: &str| -> Vec<String> {
        req.get(k)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let is_import = rec.kind == "import";
    let error = rec
        .error()
        .map(|(code, message)| FeedError { code, message });
    FeedOperation {
        registry: FeedRegistry {
            id: format!(
                "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerRegistry/registries/{}",
                rec.subscription_id, rec.resource_group, rec.registry_name
            ),
            subscription_id: rec.subscription_id.clone(),
            resource_group: rec.resource_group.clone(),
            name: rec.registry_name.clone(),
        },
        source: is_import.then(|| FeedSource {
            registry_uri: text("registryUri"),
            resource_id: text("resourceId"),
            source_image: text("sourceImage").unwrap_or_default(),
        }),
        target_tags: list("targetTags"),
        untagged_target_repositories: list("untaggedTargetRepositories"),
        mode: is_import.then(|| {
            if req.get("force").and_then(|v| v.as_bool()) == Some(true) {
                "Force".to_owned()
            } else {
                "NoForce".to_owned()
            }
        }),
        status: st
            .map(|s| s.arm_status().to_owned())
            .unwrap_or_else(|| rec.state.clone()),
        state: rec.state.clone(),
        created_at: rec.created_at,
        started_at: rec.started_at,
        ended_at: rec.ended_at,
        percent_complete: if st == Some(OperationState::Succeeded) {
            100.0
        } else {
            rec.percent_complete
        },
        progress: rec
            .progress_json()
            .and_then(|p| serde_json::from_value(p.clone()).ok()),
        error,
        id: rec.id,
        kind: rec.kind,
        status_url,
        result_url,
        change_seq: row.change_seq,
    }
}

/// Whether the operation is shown: its results are still kept (an expired operation's URLs
/// answer 404, so the feed forgets it too) and the caller may read its registry.
fn visible(state: &AppState, caller: &Caller, row: &FeedRow) -> bool {
    let r = &row.record;
    if let Some(ended) = r.ended_at {
        let age = (chrono::Utc::now() - ended).to_std().unwrap_or_default();
        if age > state.config.operation_retention {
            return false;
        }
    }
    let AuthMode::ArmRbac { rbac, .. } = &state.config.auth else {
        return true;
    };
    let scope = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerRegistry/registries/{}",
        r.subscription_id, r.resource_group, r.registry_name
    );
    rbac.is_allowed(&caller.oid, READ, &scope)
}

/// The query of the list.
struct ListQuery {
    filter: OperationFilter,
    top: u32,
    after: Option<PageKey>,
}

fn parse_list_query(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery {
        filter: OperationFilter::default(),
        top: 50,
        after: None,
    };
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "registry" if !v.is_empty() => {
                // Only a name a registry can have reaches the store (no NUL, no SQL surprise).
                acr_core::arm::validate_registry_name(&v)
                    .map_err(|e| ApiError::bad_request("InvalidParameter", e.message))?;
                q.filter.registry = Some(v.into_owned());
            }
            "state" if !v.is_empty() => {
                let s = STATE_FILTERS[1..]
                    .iter()
                    .find(|n| n.eq_ignore_ascii_case(&v))
                    .and_then(|n| OperationState::parse(n))
                    .ok_or_else(|| {
                    ApiError::bad_request(
                        "InvalidParameter",
                        "The 'state' parameter must be one of Queued, Running, Succeeded, Failed, Canceled.",
                    )
                })?;
                q.filter.state = Some(s.as_str().to_owned());
            }
            "top" | "$top" => {
                q.top = (v.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| v.parse::<u32>().ok())
                    .flatten()
                    .filter(|n| (1..=MAX_TOP).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "InvalidParameter",
                            format!("The 'top' parameter must be an integer from 1 to {MAX_TOP}."),
                        )
                    })?;
            }
            "skipToken" | "$skipToken" if !v.is_empty() => {
                q.after = Some(parse_skip_token(&v).ok_or_else(|| {
                    ApiError::bad_request("InvalidParameter", "The 'skipToken' is not valid.")
                })?);
            }
            _ => {}
        }
    }
    Ok(q)
}

/// `<microseconds since the epoch>_<operation id>`.
fn skip_token(k: &PageKey) -> String {
    format!("{}_{}", k.created_at.timestamp_micros(), k.id)
}

fn parse_skip_token(s: &str) -> Option<PageKey> {
    if !SKIP_TOKEN.is_match(s) {
        return None;
    }
    let (micros, id) = s.split_once('_')?;
    let created_at = chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    (!id.is_empty() && id.chars().count() <= 100).then(|| PageKey {
        created_at,
        id: id.to_owned(),
    })
}

/// The operations, newest first.
#[utoipa::path(get, path = "/_acr-import/operations", operation_id = "Feed_ListOperations", tag = "portal",
    params(("registry" = Option<String>, Query, description = "Only operations on this registry (name, any case)"),
           ("state" = Option<String>, Query, description = "Queued, Running, Succeeded, Failed or Canceled"),
           ("top" = Option<u32>, Query, description = "Page size, 1 to 200 (default 50)"),
           ("skipToken" = Option<String>, Query, description = "From a nextLink")),
    responses((status = 200, description = "A page of operations, newest first", body = FeedPage),
              (status = "default", description = "A bad parameter, or no token in arm-rbac mode", body = acr_core::wire::ErrorResponse)))]
pub async fn list_operations(
    State(state): State<AppState>,
    caller: Caller,
    scheme: Option<Extension<ListenerScheme>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<FeedPage>, ApiError> {
    let q = parse_list_query(raw.as_deref())?;
    let base = crate::urls::public_base(&state, scheme.as_deref(), &headers)?;
    let mut value = Vec::new();
    let mut after = q.after.clone();
    let mut more = false;
    // Reads on until a page of visible operations is full (or a bound is reached: the
    // nextLink then continues where the reading stopped).
    let want = BATCH.max(q.top + 1);
    'read: for _ in 0..MAX_BATCHES {
        more = false;
        let rows = state
            .store
            .list_operations(&q.filter, want, after.as_ref())
            .await?;
        let exhausted = rows.len() < want as usize;
        for row in rows {
            if value.len() == q.top as usize {
                more = true;
                break 'read;
            }
            after = Some(PageKey::after(&row.record));
            if visible(&state, &caller, &row) {
                value.push(item(&base, row));
            }
        }
        if exhausted {
            break;
        }
        more = true;
    }
    let next_link = match (more, &after) {
        (true, Some(k)) => {
            let mut url = format!("{base}{PREFIX}/operations?top={}", q.top);
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            if let Some(r) = &q.filter.registry {
                ser.append_pair("registry", r);
            }
            if let Some(s) = &q.filter.state {
                ser.append_pair("state", s);
            }
            ser.append_pair("skipToken", &skip_token(k));
            url.push('&');
            url.push_str(&ser.finish());
            Some(url)
        }
        _ => None,
    };
    Ok(Json(FeedPage { value, next_link }))
}

/// The event name of an operation's change.
fn event_name(row: &FeedRow) -> &'static str {
    match row.record.state() {
        Ok(s) if s.is_terminal() => "finished",
        Ok(OperationState::Queued) if row.record.started_at.is_none() => "created",
        _ => "progress",
    }
}

/// Where a stream starts: after `Last-Event-ID` (header, or `lastEventId` in the query for
/// clients that cannot set headers), else after the newest change (only what happens next).
fn resume_point(headers: &HeaderMap, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    let from_query = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "lastEventId")
        .map(|(_, v)| v.into_owned());
    let text = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(from_query);
    match text.as_deref() {
        None | Some("") => Ok(None),
        Some(t) => (t.len() <= 18 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<i64>().ok())
            .flatten()
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "InvalidParameter",
                    "Last-Event-ID must be an event id of this stream (a non-negative integer).",
                )
            }),
    }
}

/// Server-Sent Events of the operations' changes.
#[utoipa::path(get, path = "/_acr-import/operations/events", operation_id = "Feed_OperationEvents", tag = "portal",
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this event"),
           ("lastEventId" = Option<String>, Query, description = "The same, for clients that cannot set headers")),
    responses((status = 200, description = "text/event-stream: events `created`, `progress`, `finished`; data is a FeedOperation, id its changeSeq", content_type = "text/event-stream", body = FeedOperation),
              (status = "default", description = "A bad Last-Event-ID, or no token in arm-rbac mode", body = acr_core::wire::ErrorResponse)))]
pub async fn operation_events(
    State(state): State<AppState>,
    caller: Caller,
    scheme: Option<Extension<ListenerScheme>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let base = crate::urls::public_base(&state, scheme.as_deref(), &headers)?;
    let start = match resume_point(&headers, raw.as_deref())? {
        Some(n) => n,
        None => state.store.last_change_seq().await?,
    };
    let stream = events(state, caller, base, start);
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // Proxies must not buffer the stream.
    resp.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    *resp.status_mut() = StatusCode::OK;
    Ok(resp)
}

fn events(
    state: AppState,
    caller: Caller,
    base: String,
    start: i64,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(
        (
            state,
            caller,
            base,
            start,
            std::collections::VecDeque::<Event>::new(),
        ),
        |(state, caller, base, mut seq, mut pending)| async move {
            loop {
                if let Some(e) = pending.pop_front() {
                    return Some((Ok(e), (state, caller, base, seq, pending)));
                }
                match state.store.changes_since(seq, 100).await {
                    Ok(rows) if !rows.is_empty() => {
                        for row in rows {
                            seq = seq.max(row.change_seq);
                            if !visible(&state, &caller, &row) {
                                continue;
                            }
                            let name = event_name(&row);
                            let id = row.change_seq.to_string();
                            let data = serde_json::to_string(&item(&base, row))
                                .unwrap_or_else(|_| "{}".into());
                            pending.push_back(Event::default().event(name).id(id).data(data));
                        }
                        // Moves the client's resume point past changes it may not see (an
                        // event with an id and no data is not dispatched, its id is kept).
                        if pending.is_empty() {
                            pending.push_back(Event::default().id(seq.to_string()));
                        }
                    }
                    Ok(_) => tokio::time::sleep(POLL).await,
                    Err(e) => {
                        tracing::warn!(error = %acr_core::error_chain(&e), "operations feed: reading changes");
                        tokio::time::sleep(POLL * 4).await;
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_tokens_round_trip() {
        let k = PageKey {
            created_at: chrono::DateTime::from_timestamp_micros(1_780_000_000_123_456)
                .expect("time"),
            id: "registries-0f1e".into(),
        };
        assert_eq!(parse_skip_token(&skip_token(&k)), Some(k));
        assert_eq!(parse_skip_token("x_y"), None);
        assert_eq!(parse_skip_token("12_"), None);
    }

    #[test]
    fn list_parameters_are_checked() {
        assert!(parse_list_query(Some("top=0")).is_err());
        assert!(parse_list_query(Some("top=201")).is_err());
        assert!(parse_list_query(Some("state=Done")).is_err());
        let q = parse_list_query(Some("top=5&state=running&registry=MyReg1")).expect("ok");
        assert_eq!(q.top, 5);
        assert_eq!(q.filter.state.as_deref(), Some("Running"));
        assert_eq!(q.filter.registry.as_deref(), Some("MyReg1"));
        for bad in ["a%00b", "my-reg", "abc", "%E2%9C%93abcde"] {
            let e = parse_list_query(Some(&format!("registry={bad}")))
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(e.status.as_u16(), 400, "{bad}");
            assert_eq!(e.code, "InvalidParameter", "{bad}");
        }
    }
}
