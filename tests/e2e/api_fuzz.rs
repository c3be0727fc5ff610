//! A property-based run of the whole API, generated from the OpenAPI document
//! (`openapi/acr-import.json`): every operation it lists, with path parameters, query,
//! headers and bodies drawn from the document's schemas and then bent (wrong types, unknown
//! fields, huge and unicode strings, path traversal, invalid digests, broken JSON, 5 MB
//! bodies, missing or wrong content types, invalid api-versions, very deep JSON, other
//! methods). The properties: no answer is a 5xx; every 4xx is an ARM error envelope with a
//! non-empty code and message and an `x-ms-request-id`; the service is healthy afterwards.
//!
//! Deterministic: the seed is fixed (override with `ACR_API_FUZZ_SEED`, the case count with
//! `ACR_API_FUZZ_CASES`); a failure prints the seed and the offending requests.
//!
//! Imports the generator makes valid point at 127.0.0.1 ports nobody listens on: a
//! `registryUri` is only ever drawn from a fixed list of loopback or unparseable values, so
//! no test traffic leaves the machine.

use std::sync::Arc;

use acr_import_tests::arm::API_VERSION;
use acr_import_tests::TestEnv;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::common::REG;

const DEFAULT_SEED: u64 = 0x00ac_1234_5eed;
const DEFAULT_CASES: usize = 700;

/// One operation of the document.
struct Op {
    method: Method,
    path: String,
    /// (name, location) of each parameter.
    params: Vec<(String, String)>,
    body: Option<Value>,
}

fn load_ops(doc: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (m, op) in item.as_object().expect("path item") {
            let method = match m.as_str() {
                "get" => Method::GET,
                "put" => Method::PUT,
                "post" => Method::POST,
                "patch" => Method::PATCH,
                "delete" => Method::DELETE,
                _ => continue,
            };
            let params = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            (
                                p["name"].as_str().unwrap_or_default().to_owned(),
                                p["in"].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let body = op["requestBody"]["content"]["application/json"]["schema"]
                .as_object()
                .map(|s| Value::Object(s.clone()));
            ops.push(Op {
                method,
                path: path.clone(),
                params,
                body,
            });
        }
    }
    ops
}

/// Strings that have broken parsers elsewhere.
fn nasty_string(rng: &mut StdRng) -> String {
    match rng.gen_range(0..22) {
        0 => String::new(),
        1 => " ".into(),
        2 => "../../../etc/passwd".into(),
        3 => "a/../../b".into(),
        4 => "%2e%2e/%2e%2e/x".into(),
        5 => "名前/ø:ü".into(),
        6 => "🐳/🐋:🦀".into(),
        7 => "\u{202e}evil\u{202d}".into(),
        8 => "a\u{0}b".into(),
        9 => "line\nbreak\r\n".into(),
        10 => "x".repeat(rng.gen_range(256..5000)),
        11 => "sha256:zz".into(),
        12 => format!("demo/x@sha256:{}", "g".repeat(64)),
        13 => format!("demo/x@sha512:{}", "a".repeat(64)),
        14 => "UPPER/Case:Tag".into(),
        15 => "demo/x:".into(),
        16 => "demo//x:v1".into(),
        17 => "-/-:-".into(),
        18 => "'; drop table operations; --".into(),
        19 => "${jndi:ldap://127.0.0.1/a}".into(),
        20 => "demo/x:v1".into(),
        _ => (0..rng.gen_range(1..40))
            .map(|_| char::from_u32(rng.gen_range(0x20..0x3000)).unwrap_or('?'))
            .collect(),
    }
}

/// Values of the wrong type (or shape) for whatever was expected.
fn wrong_value(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..9) {
        0 => Value::Null,
        1 => json!(rng.gen::<i64>()),
        2 => json!(-1.5e300),
        3 => json!(true),
        4 => json!([1, "two", null]),
        5 => json!({"unexpected": {"nested": [1, 2, 3]}}),
        6 => json!(nasty_string(rng)),
        7 => {
            // Deep but under serde_json's recursion limit: must still be refused cleanly.
            let mut v = json!("leaf");
            for _ in 0..100 {
                v = json!([v]);
            }
            v
        }
        _ => json!(""),
    }
}

/// `registryUri` only ever comes from here: loopback nobody serves, or unparseable.
const SAFE_REGISTRY_URIS: &[&str] = &[
    "127.0.0.1:1",
    "127.0.0.1:9",
    "localhost:1",
    "http://127.0.0.1:1",
    "https://127.0.0.1:1/",
    "[::1]:1",
    "127.0.0.1:99999",
    "",
    " ",
    "http://",
    "a b",
    "127.0.0.1:1/../x",
    "127.0.0.1:1?x=1",
    "\u{0}",
];

struct Gen<'a> {
    doc: &'a Value,
    rng: StdRng,
}

impl Gen<'_> {
    fn deref(&mut self, schema: &Value) -> Value {
        let mut s = schema.clone();
        for _ in 0..8 {
            let Some(r) = s.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let name = r.rsplit('/').next().unwrap_or_default();
            s = self.doc["components"]["schemas"][name].clone();
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            if let Some(options) = s.get(key).and_then(Value::as_array) {
                if !options.is_empty() {
                    let options = options.clone();
                    let i = self.rng.gen_range(0..options.len());
                    return self.deref(&options[i]);
                }
            }
        }
        s
    }

    fn value(&mut self, schema: &Value, field: &str, depth: usize) -> Value {
        if field == "registryUri" {
            let i = self.rng.gen_range(0..SAFE_REGISTRY_URIS.len());
            return json!(SAFE_REGISTRY_URIS[i]);
        }
        if depth > 6 || self.rng.gen_bool(0.12) {
            return wrong_value(&mut self.rng);
        }
        let s = self.deref(schema);
        if let Some(options) = s.get("enum").and_then(Value::as_array) {
            if !options.is_empty() && self.rng.gen_bool(0.8) {
                let i = self.rng.gen_range(0..options.len());
                return options[i].clone();
            }
            return json!(nasty_string(&mut self.rng));
        }
        let ty = match &s["type"] {
            Value::String(t) => t.clone(),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("string")
                .to_owned(),
            _ if s.get("properties").is_some() => "object".into(),
            _ => "string".into(),
        };
        match ty.as_str() {
            "object" => {
                let mut out = Map::new();
                let required: Vec<String> = s["required"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(props) = s["properties"].as_object() {
                    for (k, ps) in props {
                        let p = if required.contains(k) { 0.92 } else { 0.5 };
                        if self.rng.gen_bool(p) {
                            let v = self.value(ps, k, depth + 1);
                            out.insert(k.clone(), v);
                        }
                    }
                }
                if s.get("additionalProperties").is_some_and(Value::is_object) {
                    for _ in 0..self.rng.gen_range(0..3) {
                        let k = nasty_string(&mut self.rng);
                        out.insert(k, json!(nasty_string(&mut self.rng)));
                    }
                }
                if self.rng.gen_bool(0.1) {
                    let k = nasty_string(&mut self.rng);
                    let v = wrong_value(&mut self.rng);
                    out.insert(k, v);
                }
                Value::Object(out)
            }
            "array" => {
                let n = if self.rng.gen_bool(0.05) {
                    self.rng.gen_range(20..200)
                } else {
                    self.rng.gen_range(0..4)
                };
                let items = s["items"].clone();
                Value::Array(
                    (0..n)
                        .map(|_| self.value(&items, field, depth + 1))
                        .collect(),
                )
            }
            "integer" => match self.rng.gen_range(0..4) {
                0 => json!(0),
                1 => json!(i64::MAX),
                2 => json!(-1),
                _ => json!(self.rng.gen_range(1..100_000)),
            },
            "number" => json!(self.rng.gen_range(-1e9..1e9)),
            "boolean" => json!(self.rng.gen_bool(0.5)),
            _ => {
                let plausible = match field {
                    "sourceImage" => Some("demo/x:v1"),
                    "targetTags" | "untaggedTargetRepositories" => Some("imported/x:v1"),
                    "location" => Some("eastus"),
                    "name" => Some("Standard"),
                    _ => None,
                };
                match plausible {
                    Some(p) if self.rng.gen_bool(0.5) => json!(p),
                    _ => json!(nasty_string(&mut self.rng)),
                }
            }
        }
    }
}

/// A path segment: mostly percent-encoded, sometimes raw traversal or encodings.
fn segment(rng: &mut StdRng, good: &str) -> String {
    match rng.gen_range(0..10) {
        0..=4 => good.to_owned(),
        5 => "..".into(),
        6 => "%2e%2e".into(),
        7 => "%00".into(),
        _ => url::form_urlencoded::byte_serialize(nasty_string(rng).as_bytes())
            .collect::<String>()
            .replace('+', "%20"),
    }
}

fn api_version(rng: &mut StdRng) -> Option<String> {
    match rng.gen_range(0..12) {
        0 => None,
        1 => Some("2099-01-01".into()),
        2 => Some("latest".into()),
        3 => Some("2019-05-01-preview".into()),
        4 => Some("2016-06-27-preview".into()),
        5 => Some(format!("{API_VERSION}&api-version=2019-05-01")),
        6 => Some("%ff%fe".into()),
        7 => Some("x".repeat(3000)),
        8 => Some("2019-05-01".into()),
        _ => Some(API_VERSION.into()),
    }
}

struct Request {
    method: Method,
    url: String,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.body.as_deref().unwrap_or_default();
        let shown = String::from_utf8_lossy(&body[..body.len().min(300)]);
        write!(
            f,
            "{} {} [content-type: {:?}] body {} bytes: {shown}",
            self.method,
            self.url.chars().take(300).collect::<String>(),
            self.content_type,
            body.len()
        )
    }
}

fn make_request(g: &mut Gen<'_>, op: &Op, env: &TestEnv, big: &Arc<Vec<u8>>) -> Request {
    let rng = &mut g.rng;
    let mut path = op.path.clone();
    let mut query: Vec<String> = Vec::new();
    for (name, loc) in &op.params {
        match (loc.as_str(), name.as_str()) {
            ("path", "subscriptionId") => {
                let s = segment(rng, &env.sub);
                path = path.replace("{subscriptionId}", &s);
            }
            ("path", "resourceGroupName") => {
                let s = segment(rng, &env.rg);
                path = path.replace("{resourceGroupName}", &s);
            }
            ("path", "registryName") => {
                let good = if rng.gen_bool(0.5) { REG } else { "Other1" };
                let s = segment(rng, good);
                path = path.replace("{registryName}", &s);
            }
            ("path", other) => {
                let good = match other {
                    "location" => "eastus",
                    _ => "registries-00000000-0000-0000-0000-000000000000",
                };
                let s = segment(rng, good);
                path = path.replace(&format!("{{{other}}}"), &s);
            }
            ("query", "api-version") => {
                if let Some(v) = api_version(rng) {
                    query.push(format!("api-version={v}"));
                }
            }
            ("query", other) if rng.gen_bool(0.6) => {
                let v: String =
                    url::form_urlencoded::byte_serialize(nasty_string(rng).as_bytes()).collect();
                query.push(format!("{other}={v}"));
            }
            _ => {}
        }
    }
    if rng.gen_bool(0.05) {
        query.push("unknown=%zz".into());
    }
    let mut headers = Vec::new();
    if rng.gen_bool(0.2) {
        headers.push(("x-ms-client-request-id", "x".repeat(rng.gen_range(1..600))));
    }
    let content_type = match rng.gen_range(0..14) {
        0 => None,
        1 => Some("text/plain"),
        2 => Some("application/x-www-form-urlencoded"),
        3 => Some("application/json; charset=utf-8"),
        4 => Some("application/merge-patch+json"),
        5 => Some("a/b;;;=="),
        _ => Some("application/json"),
    };
    let body = match (&op.body, rng.gen_range(0..20)) {
        (_, 0) => Some(b"{\"source\": ".to_vec()),
        (_, 1) => Some(
            (0..rng.gen_range(1..200))
                .map(|_| rng.gen::<u8>())
                .collect(),
        ),
        (_, 2) => Some(format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes()),
        (_, 3) => Some(big.as_ref().clone()),
        (_, 4) => Some(Vec::new()),
        (Some(_), 5) => Some(b"{\"a\":1,\"a\":2}".to_vec()),
        (Some(_), 6) => Some(b"{} trailing".to_vec()),
        (Some(schema), _) => {
            let v = g.value(schema, "", 0);
            Some(serde_json::to_vec(&v).unwrap_or_default())
        }
        (None, _) => None,
    };
    let rng = &mut g.rng;
    let method = if rng.gen_bool(0.06) {
        [
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::POST,
        ][rng.gen_range(0..5)]
        .clone()
    } else {
        op.method.clone()
    };
    let url = if query.is_empty() {
        format!("{}{path}", env.arm.base())
    } else {
        format!("{}{path}?{}", env.arm.base(), query.join("&"))
    };
    Request {
        method,
        url,
        content_type,
        headers,
        body,
    }
}

/// The property; `Err` says what is wrong.
/// The operations feed's event stream never ends: its 200 is judged by its headers.
fn is_event_stream(url: &str) -> bool {
    url.split('?')
        .next()
        .is_some_and(|p| p.ends_with("/_acr-import/operations/events"))
}

/// Sends to the event stream; a 200 must be `text/event-stream` and its body is not read
/// (an error's body is: it ends).
async fn send_to_stream(
    req: &Request,
    headers: &[(&str, &str)],
) -> Result<acr_import_tests::arm::ArmResponse, reqwest::Error> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mut r = client.request(req.method.clone(), &req.url);
    if let Some(ct) = req.content_type {
        r = r.header("content-type", ct);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = &req.body {
        r = r.body(b.clone());
    }
    let resp = r.send().await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let streaming = status.as_u16() == 200
        && headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = if streaming {
        bytes::Bytes::new()
    } else {
        resp.bytes().await?
    };
    Ok(acr_import_tests::arm::ArmResponse {
        method: req.method.clone(),
        url: req.url.clone(),
        status,
        headers,
        body,
    })
}

fn check(resp: &acr_import_tests::arm::ArmResponse) -> Result<(), String> {
    let status = resp.status.as_u16();
    if status >= 500 {
        return Err(format!("a {status}"));
    }
    if status < 400 {
        return Ok(());
    }
    if resp.header("x-ms-request-id").is_none_or(|v| v.is_empty()) {
        return Err("no x-ms-request-id".into());
    }
    let v: Value = serde_json::from_slice(&resp.body)
        .map_err(|e| format!("the error body is not JSON ({e})"))?;
    let code = v["error"]["code"].as_str().unwrap_or_default();
    let message = v["error"]["message"].as_str().unwrap_or_default();
    if code.is_empty() || message.is_empty() {
        return Err("the error body is not {\"error\":{\"code\",\"message\"}}".into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_from_the_openapi_document_never_get_a_5xx() {
    let seed = std::env::var("ACR_API_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let cases: usize = std::env::var("ACR_API_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/acr-import.json");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(doc_path).expect("read the OpenAPI document"))
            .expect("OpenAPI JSON");
    let ops = load_ops(&doc);
    assert!(
        ops.len() >= 15,
        "the document lists {} operations",
        ops.len()
    );

    let env = TestEnv::start().await;
    env.create_registry(REG).await;
    env.create_registry("Other1").await;

    // One 5 MB JSON body, reused (above the 4 MiB request limit).
    let big = Arc::new(
        serde_json::to_vec(&json!({
            "source": {"registryUri": "127.0.0.1:1", "sourceImage": "x".repeat(5 * 1024 * 1024)},
            "targetTags": ["a:b"],
        }))
        .expect("big body"),
    );

    let mut g = Gen {
        doc: &doc,
        rng: StdRng::seed_from_u64(seed),
    };
    let requests: Vec<Request> = (0..cases)
        .map(|i| {
            let op = &ops[i % ops.len()];
            make_request(&mut g, op, &env, &big)
        })
        .collect();

    let results: Vec<(Request, Result<u16, String>)> = futures::stream::iter(requests)
        .map(|req| {
            let env = &env;
            async move {
                let headers: Vec<(&str, &str)> =
                    req.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let resp = if is_event_stream(&req.url) {
                    send_to_stream(&req, &headers).await
                } else {
                    env.arm
                        .try_send(
                            req.method.clone(),
                            &req.url,
                            &headers,
                            req.content_type,
                            req.body.clone(),
                        )
                        .await
                };
                let outcome = match resp {
                    Ok(resp) => check(&resp)
                        .map(|()| resp.status.as_u16())
                        .map_err(|why| format!("{why}: {resp}")),
                    Err(e) => {
                        let mut why = e.to_string();
                        let mut src = std::error::Error::source(&e);
                        while let Some(s) = src {
                            why.push_str(&format!(": {s}"));
                            src = s.source();
                        }
                        Err(format!("no answer: {why}"))
                    }
                };
                (req, outcome)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;

    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    let mut failures = Vec::new();
    for (req, outcome) in &results {
        match outcome {
            Ok(s) => *by_status.entry(*s).or_default() += 1,
            Err(why) => failures.push(format!("{req}\n    → {why}")),
        }
    }
    println!(
        "api fuzz: seed {seed}, {} requests, answers by status: {by_status:?}",
        results.len()
    );
    assert!(
        failures.is_empty(),
        "seed {seed}: {} of {} generated requests broke the property:\n{}",
        failures.len(),
        results.len(),
        failures
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
            + "\n--- service log (tail) ---\n"
            + &acr_import_tests::util::tail_file(env.service.log_path(), 30)
    );
    // The run must have exercised both sides: accepted requests and refused ones.
    assert!(
        by_status.keys().any(|s| *s < 300),
        "nothing was accepted: {by_status:?}"
    );
    assert!(
        by_status.keys().any(|s| *s >= 400),
        "nothing was refused: {by_status:?}"
    );

    // Still healthy: the health probe, a registry round trip and an accepted import.
    let health = env.arm.get(&format!("{}/health", env.arm.base())).await;
    assert_eq!(health.status.as_u16(), 200, "{health}");
    env.arm.put_registry(&env.sub, &env.rg, REG).await;
    env.arm
        .get_registry(&env.sub, &env.rg, REG)
        .await
        .expect_status(200);
    let accepted = env
        .arm
        .import(
            &env.sub,
            &env.rg,
            REG,
            &json!({"source": {"registryUri": "127.0.0.1:1", "sourceImage": "demo/x:v1"},
                    "targetTags": ["after/fuzz:v1"]}),
        )
        .await;
    assert_eq!(accepted.status.as_u16(), 202, "{accepted}");
}
