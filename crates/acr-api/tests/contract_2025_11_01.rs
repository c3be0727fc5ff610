//! Contract test: our OpenAPI description of `importImage` against the `Microsoft.ContainerRegistry`
//! 2025-11-01 ARM spec.
//!
//! The spec side is `fixtures/containerregistry-2025-11-01-import.json`: verbatim extracts of
//! `containerregistry.json` and of the common-types v6 `types.json` it refers to (its `_source` key
//! names repository, path and commit). Our side is `acr_api::openapi::document()` (what
//! `openapi/acr-import.json` holds).
//!
//! Both sides have their `$ref`s resolved and their schemas reduced to the keywords that make the
//! wire contract (`type`, `format`, `enum`, `default`, `pattern`, lengths, bounds, `items`,
//! `properties`, `required`, `additionalProperties`); descriptions, examples and `x-ms-*`
//! annotations other than the long-running-operation ones are not compared. Swagger 2.0 puts a
//! parameter's schema keywords on the parameter itself, OpenAPI 3.1 under `schema`: both reduce to
//! the same form.
//!
//! Anything our document says that the spec does not (an extra property, keyword, parameter or
//! header) is a failure unless it is listed in [`ALLOWED_EXTENSIONS`] with the reason.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

const FIXTURE: &str = include_str!("fixtures/containerregistry-2025-11-01-import.json");

const IMPORT_PATH: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}/importImage";
/// Document keys inside the fixture.
const SPEC_FILE: &str = "containerregistry.json";
const COMMON_TYPES: &str = "common-types/resource-management/v6/types.json";
/// Document key of our OpenAPI document.
const OURS: &str = "ours";

/// What our document may say beyond the spec: (suffix of a difference path, why it is accepted).
/// A difference is accepted only when the spec side is absent (an addition) and its path ends
/// with one of these suffixes.
const ALLOWED_EXTENSIONS: &[(&str, &str)] = &[
    (
        "/additionalProperties",
        "the body types are `serde(deny_unknown_fields)`: an unknown field is a 400 InvalidParameters \
         instead of being silently ignored, and the document says so",
    ),
    (
        "requestBody/properties/source/properties/credentials/properties/password/format",
        "`format: password` only marks the value as secret for UI tools; it constrains nothing",
    ),
    (
        "parameters/header:x-ms-client-request-id",
        "optional ARM client request id header (every ARM client sends it); we use it as the \
         operation id, as the real service does",
    ),
    (
        "responses/202/headers/Azure-AsyncOperation",
        "the spec declares no Azure-AsyncOperation header, but ARM allows it and the clients prefer \
         it over Location (see the contract notes, section 1)",
    ),
    (
        "responses/202/headers/Retry-After/minimum",
        "Retry-After is a u32 for us, so the schema says it is never negative",
    ),
    (
        "parameters/query:api-version/schema/enum",
        "the spec leaves the api-version free (minLength 1); the service answers any other than \
         the ones that carry importImage with 400 NoRegisteredProviderFound, and the document \
         lists them (issue 18: the document is the exact contract)",
    ),
    (
        "requestBody/properties/source/properties/sourceImage/pattern",
        "the service parses sourceImage as repo[:tag][@digest] (distribution grammar) and answers \
         anything else 400 InvalidParameters: the document states the grammar",
    ),
    (
        "requestBody/properties/source/properties/sourceImage/maxLength",
        "a repository name is at most 255 characters (distribution's limit)",
    ),
    (
        "requestBody/properties/targetTags/items/maxLength",
        "a repository name is at most 255 characters (distribution's limit)",
    ),
    (
        "requestBody/properties/source/properties/registryUri/pattern",
        "registryUri must be [scheme://]host[:port] (400 otherwise): the document states it",
    ),
    (
        "requestBody/properties/source/properties/resourceId/pattern",
        "resourceId must be a registry's ARM id (400 otherwise): the document states it",
    ),
    (
        "requestBody/properties/source/properties/credentials/properties/password/pattern",
        "a credential may not hold NUL (400; PostgreSQL's jsonb refuses it)",
    ),
    (
        "requestBody/properties/source/properties/credentials/properties/username/pattern",
        "a credential may not hold NUL (400; PostgreSQL's jsonb refuses it)",
    ),
    (
        "requestBody/properties/source/properties/credentials/properties/password/minLength",
        "an empty password is refused (400)",
    ),
    (
        "requestBody/properties/source/properties/credentials/properties/password/maxLength",
        "credentials are bounded (16 Ki characters), not left to abuse",
    ),
    (
        "requestBody/properties/source/properties/credentials/properties/username/maxLength",
        "credentials are bounded (1 Ki characters), not left to abuse",
    ),
    (
        "requestBody/properties/targetTags/maxItems",
        "at most 100 target tags (400 beyond)",
    ),
    (
        "requestBody/properties/targetTags/items/pattern",
        "a target tag is repo[:tag] (400 otherwise)",
    ),
    (
        "requestBody/properties/untaggedTargetRepositories/maxItems",
        "at most 100 untagged repositories (400 beyond)",
    ),
    (
        "requestBody/properties/untaggedTargetRepositories/items/pattern",
        "an untagged target is a repository name (400 otherwise)",
    ),
    (
        "requestBody/properties/untaggedTargetRepositories/items/maxLength",
        "a repository name is at most 255 characters",
    ),
];

/// Where our document is narrower than the spec because ARM enforces more than the spec says:
/// (difference path, our value, why). Accepted only with exactly this value on our side.
const ALLOWED_NARROWINGS: &[(&str, &str, &str)] = &[(
    "parameters/path:resourcegroupname/schema/pattern",
    r#""^[-\\w\\._\\(\\)]*[-\\w_\\(\\)]$""#,
    "ARM refuses a resource group name that ends in a period (the spec's pattern allows one); \
     so does the service, and the document says so",
)];

// ---------------------------------------------------------------------------------------------
// Loading and `$ref` resolution
// ---------------------------------------------------------------------------------------------

/// A set of documents that `$ref`s can point into.
struct Docs {
    docs: Vec<(&'static str, Value)>,
}

impl Docs {
    fn spec() -> Docs {
        let mut fixture: Value = serde_json::from_str(FIXTURE).expect("fixture is JSON");
        let take = |fixture: &mut Value, key: &str| {
            fixture
                .get_mut(key)
                .map(Value::take)
                .unwrap_or_else(|| panic!("fixture has no {key:?}"))
        };
        let spec = take(&mut fixture, SPEC_FILE);
        let common = take(&mut fixture, COMMON_TYPES);
        Docs {
            docs: vec![(SPEC_FILE, spec), (COMMON_TYPES, common)],
        }
    }

    fn ours() -> Docs {
        Docs::from_ours(ours_json())
    }

    fn from_ours(doc: Value) -> Docs {
        Docs {
            docs: vec![(OURS, doc)],
        }
    }

    fn doc(&self, key: &str) -> &Value {
        &self
            .docs
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("no document {key:?}"))
            .1
    }

    /// Resolves `reference` found in document `current`: `#/a/b` (same document) or
    /// `../…/common-types/resource-management/v6/types.json#/a/b`.
    fn resolve(&self, current: &'static str, reference: &str) -> (&'static str, &Value) {
        let (file, pointer) = reference
            .split_once('#')
            .unwrap_or_else(|| panic!("unsupported $ref {reference:?}"));
        let key = if file.is_empty() {
            current
        } else {
            self.docs
                .iter()
                .map(|(k, _)| *k)
                .find(|k| file.ends_with(k))
                .unwrap_or_else(|| {
                    panic!("$ref {reference:?} points into a document we do not have")
                })
        };
        let target = self
            .doc(key)
            .pointer(pointer)
            .unwrap_or_else(|| panic!("$ref {reference:?} does not resolve in {key}"));
        (key, target)
    }

    /// Follows `$ref` (once, for parameter and response objects, which carry no siblings).
    fn deref<'a>(&'a self, current: &'static str, v: &'a Value) -> (&'static str, &'a Value) {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self.resolve(current, r),
            None => (current, v),
        }
    }

    /// The importImage operation object.
    fn operation(&self, doc: &'static str) -> Option<&Value> {
        self.doc(doc).get("paths")?.get(IMPORT_PATH)?.get("post")
    }

    /// The reduced form of `schema` (see the module documentation).
    fn canonical(&self, doc: &'static str, schema: &Value) -> Value {
        self.canonical_inner(doc, schema, &mut Vec::new())
    }

    fn canonical_inner(&self, doc: &'static str, schema: &Value, stack: &mut Vec<String>) -> Value {
        let Some(obj) = schema.as_object() else {
            return schema.clone();
        };
        let mut out = Map::new();
        // utoipa writes a nullable `$ref` as `oneOf: [{type: null}, X]`: report it as X with
        // `type: [t, "null"]`, the form a nullable inline schema has, so the diff says "nullable".
        if let Some(alternatives) = obj.get("oneOf").and_then(Value::as_array) {
            let is_null = |v: &Value| v.get("type") == Some(&Value::String("null".into()));
            if let ([a, b], 1) = (
                alternatives.as_slice(),
                alternatives.iter().filter(|v| is_null(v)).count(),
            ) {
                let other = if is_null(a) { b } else { a };
                let mut c = self.canonical_inner(doc, other, stack);
                if let Some(m) = c.as_object_mut() {
                    let t = m.remove("type").unwrap_or(Value::Null);
                    m.insert("type".into(), Value::Array(vec![t, "null".into()]));
                }
                merge_into(&mut out, c);
                let mut rest = obj.clone();
                rest.remove("oneOf");
                merge_into(
                    &mut out,
                    self.canonical_inner(doc, &Value::Object(rest), stack),
                );
                return Value::Object(out);
            }
        }
        // A `oneOf` of object shapes with nothing beside it (how our document says that an
        // `ImportSource` names exactly one of `resourceId` and `registryUri`) is compared as
        // the one object type the shapes split: their properties united, only what every
        // shape requires required.
        if let Some(shapes) = obj.get("oneOf").and_then(Value::as_array) {
            let objects = shapes.len() > 1
                && shapes.iter().all(|s| s.get("properties").is_some())
                && !obj.contains_key("properties");
            if objects {
                let canon: Vec<Value> = shapes
                    .iter()
                    .map(|s| self.canonical_inner(doc, s, stack))
                    .collect();
                let mut props = Map::new();
                for c in &canon {
                    if let Some(p) = c.get("properties").and_then(Value::as_object) {
                        props.extend(p.clone());
                    }
                }
                let required_by_all: Vec<Value> = canon[0]["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| {
                        canon
                            .iter()
                            .all(|c| c["required"].as_array().is_some_and(|a| a.contains(r)))
                    })
                    .cloned()
                    .collect();
                let mut merged = canon[0].clone();
                if let Some(m) = merged.as_object_mut() {
                    m.insert("properties".into(), Value::Object(props));
                    m.insert("required".into(), sorted(&Value::Array(required_by_all)));
                }
                return merged;
            }
        }
        // A one-element `oneOf` / `anyOf` (what utoipa writes for a `$ref` with a `default`) is
        // that element.
        for k in ["oneOf", "anyOf"] {
            if let Some([only]) = obj.get(k).and_then(Value::as_array).map(Vec::as_slice) {
                merge_into(&mut out, self.canonical_inner(doc, only, stack));
                let mut rest = obj.clone();
                rest.remove(k);
                merge_into(
                    &mut out,
                    self.canonical_inner(doc, &Value::Object(rest), stack),
                );
                return Value::Object(out);
            }
        }
        // `$ref` (with OpenAPI 3.1 / Swagger siblings such as `default`, which win).
        if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
            let key = format!("{doc}{r}");
            if stack.contains(&key) {
                // A recursive schema: stop here, identically on both sides.
                let name = r.rsplit('/').next().unwrap_or(r);
                out.insert("$recursive".into(), Value::String(name.into()));
                return Value::Object(out);
            }
            let (target_doc, target) = self.resolve(doc, r);
            stack.push(key);
            let resolved = self.canonical_inner(target_doc, target, stack);
            stack.pop();
            merge_into(&mut out, resolved);
        }
        for part in obj
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let c = self.canonical_inner(doc, part, stack);
            merge_into(&mut out, c);
        }
        for (k, v) in obj {
            let v = match k.as_str() {
                "type" | "format" | "default" | "pattern" | "minLength" | "maxLength"
                | "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => v.clone(),
                "enum" | "required" => sorted(v),
                "items" => self.canonical_inner(doc, v, stack),
                "additionalProperties" if v.is_object() => self.canonical_inner(doc, v, stack),
                "additionalProperties" => v.clone(),
                "oneOf" | "anyOf" => Value::Array(
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .map(|s| self.canonical_inner(doc, s, stack))
                        .collect(),
                ),
                "properties" => Value::Object(
                    v.as_object()
                        .into_iter()
                        .flatten()
                        .map(|(name, s)| (name.clone(), self.canonical_inner(doc, s, stack)))
                        .collect(),
                ),
                _ => continue,
            };
            match (k.as_str(), out.get_mut(k)) {
                ("properties", Some(Value::Object(existing))) => {
                    existing.extend(v.as_object().cloned().unwrap_or_default());
                }
                ("required", Some(existing)) => {
                    let merged: Vec<Value> = existing
                        .as_array()
                        .into_iter()
                        .flatten()
                        .chain(v.as_array().into_iter().flatten())
                        .cloned()
                        .collect();
                    *existing = sorted(&Value::Array(merged));
                }
                _ => {
                    out.insert(k.clone(), v);
                }
            }
        }
        Value::Object(out)
    }
}

/// Merges a canonical schema into another (used for `$ref` targets and `allOf` parts).
fn merge_into(out: &mut Map<String, Value>, other: Value) {
    let Value::Object(other) = other else { return };
    for (k, v) in other {
        match (k.as_str(), out.get_mut(&k)) {
            ("properties", Some(Value::Object(existing))) => {
                existing.extend(v.as_object().cloned().unwrap_or_default());
            }
            ("required", Some(existing)) => {
                let mut all: Vec<Value> = existing.as_array().cloned().unwrap_or_default();
                all.extend(v.as_array().cloned().unwrap_or_default());
                *existing = sorted(&Value::Array(all));
            }
            _ => {
                out.insert(k, v);
            }
        }
    }
}

/// An array sorted and de-duplicated (order is not part of `enum` or `required`).
fn sorted(v: &Value) -> Value {
    let set: BTreeSet<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| x.to_string())
        .collect();
    Value::Array(
        set.into_iter()
            .map(|s| serde_json::from_str(&s).expect("re-parse"))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// Differences
// ---------------------------------------------------------------------------------------------

/// One place where the two documents disagree.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Difference {
    path: String,
    spec: Option<String>,
    ours: Option<String>,
}

impl Difference {
    fn new(path: impl Into<String>, spec: Option<&Value>, ours: Option<&Value>) -> Self {
        Difference {
            path: path.into(),
            spec: spec.map(Value::to_string),
            ours: ours.map(Value::to_string),
        }
    }

    fn allowed_because(&self) -> Option<&'static str> {
        if let (Some(_), Some(ours)) = (&self.spec, &self.ours) {
            return ALLOWED_NARROWINGS
                .iter()
                .find(|(path, value, _)| self.path == *path && ours == value)
                .map(|(_, _, why)| *why);
        }
        if self.spec.is_some() || self.ours.is_none() {
            return None;
        }
        ALLOWED_EXTENSIONS
            .iter()
            .find(|(suffix, _)| self.path.ends_with(suffix))
            .map(|(_, why)| *why)
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "<absent>".into());
        let what = match (&self.spec, &self.ours) {
            (None, Some(_)) => "ours adds",
            (Some(_), None) => "ours lacks",
            _ => "differs",
        };
        write!(
            f,
            "{}: {what}\n      spec: {}\n      ours: {}",
            self.path,
            show(&self.spec),
            show(&self.ours)
        )
    }
}

/// Walks two canonical values and records where they differ.
fn diff(path: &str, spec: Option<&Value>, ours: Option<&Value>, out: &mut Vec<Difference>) {
    match (spec, ours) {
        (Some(Value::Object(s)), Some(Value::Object(o))) => {
            let keys: BTreeSet<&String> = s.keys().chain(o.keys()).collect();
            for k in keys {
                diff(&format!("{path}/{k}"), s.get(k), o.get(k), out);
            }
        }
        (s, o) if s == o => {}
        (s, o) => out.push(Difference::new(path, s, o)),
    }
}

/// The differences that are not accepted extensions.
fn failures(diffs: Vec<Difference>) -> Vec<Difference> {
    let mut v: Vec<Difference> = diffs
        .into_iter()
        .filter(|d| d.allowed_because().is_none())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn report(what: &str, failures: &[Difference]) -> String {
    let mut s = format!(
        "{what}: {} difference(s) from the 2025-11-01 spec \
         (fixture: crates/acr-api/tests/fixtures/containerregistry-2025-11-01-import.json)\n",
        failures.len()
    );
    for d in failures {
        s.push_str(&format!("  - {d}\n"));
    }
    s.push_str(
        "Fix the utoipa annotations (acr-core wire.rs, acr-api imports.rs), or, if the difference \
         is deliberate, add it to ALLOWED_EXTENSIONS with the reason.",
    );
    s
}

#[track_caller]
fn assert_no_failures(what: &str, failures: Vec<Difference>) {
    assert!(failures.is_empty(), "{}", report(what, &failures));
}

// ---------------------------------------------------------------------------------------------
// The checks (each returns the unaccepted differences, so that they can be self-tested)
// ---------------------------------------------------------------------------------------------

fn spec_operation(spec: &Docs) -> &Value {
    spec.operation(SPEC_FILE)
        .expect("fixture has the importImage POST")
}

fn check_operation(spec: &Docs, ours: &Docs) -> Vec<Difference> {
    let mut out = Vec::new();
    let s = spec_operation(spec);
    let Some(o) = ours.operation(OURS) else {
        out.push(Difference::new(
            format!("paths/{IMPORT_PATH}/post"),
            Some(&Value::String("declared".into())),
            None,
        ));
        return out;
    };
    for key in [
        "operationId",
        "x-ms-long-running-operation",
        "x-ms-long-running-operation-options",
    ] {
        diff(key, s.get(key), o.get(key), &mut out);
    }
    failures(out)
}

fn check_request_body(spec: &Docs, ours: &Docs) -> Vec<Difference> {
    let mut out = Vec::new();
    let s_op = spec_operation(spec);
    let Some(o_op) = ours.operation(OURS) else {
        return check_operation(spec, ours);
    };
    let s_body = s_op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| spec.deref(SPEC_FILE, p))
        .find(|(_, p)| p["in"] == "body")
        .expect("the spec has a body parameter");
    let o_body = o_op.get("requestBody");
    diff(
        "requestBody/required",
        s_body.1.get("required"),
        o_body.and_then(|b| b.get("required")),
        &mut out,
    );
    let s_schema = spec.canonical(s_body.0, &s_body.1["schema"]);
    let o_schema = o_body
        .and_then(|b| b.pointer("/content/application~1json/schema"))
        .map(|sch| ours.canonical(OURS, sch));
    diff("requestBody", Some(&s_schema), o_schema.as_ref(), &mut out);
    failures(out)
}

/// `{in}:{name}` → (required, canonical schema) for every non-body parameter.
fn parameters(docs: &Docs, doc: &'static str, op: &Value) -> Vec<(String, Value, Value)> {
    op.get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| docs.deref(doc, p))
        .filter(|(_, p)| p["in"] != "body")
        .map(|(d, p)| {
            let id = format!(
                "{}:{}",
                p["in"].as_str().unwrap_or_default(),
                p["name"].as_str().unwrap_or_default().to_ascii_lowercase()
            );
            let required = p.get("required").cloned().unwrap_or(Value::Bool(false));
            let schema = match p.get("schema") {
                // OpenAPI 3.x
                Some(s) => docs.canonical(d, s),
                // Swagger 2.0: the schema keywords sit on the parameter itself.
                None => {
                    let mut s = p.as_object().cloned().unwrap_or_default();
                    for k in ["name", "in", "required", "description"] {
                        s.remove(k);
                    }
                    docs.canonical(d, &Value::Object(s))
                }
            };
            (id, required, schema)
        })
        .collect()
}

fn check_parameters(spec: &Docs, ours: &Docs) -> Vec<Difference> {
    let mut out = Vec::new();
    let s_op = spec_operation(spec);
    let Some(o_op) = ours.operation(OURS) else {
        return check_operation(spec, ours);
    };
    let s_params = parameters(spec, SPEC_FILE, s_op);
    let o_params = parameters(ours, OURS, o_op);
    for (id, required, schema) in &s_params {
        let path = format!("parameters/{id}");
        match o_params.iter().find(|(oid, _, _)| oid == id) {
            Some((_, o_required, o_schema)) => {
                diff(
                    &format!("{path}/required"),
                    Some(required),
                    Some(o_required),
                    &mut out,
                );
                diff(
                    &format!("{path}/schema"),
                    Some(schema),
                    Some(o_schema),
                    &mut out,
                );
            }
            None => out.push(Difference::new(path, Some(schema), None)),
        }
    }
    for (id, _, schema) in &o_params {
        if !s_params.iter().any(|(sid, _, _)| sid == id) {
            out.push(Difference::new(
                format!("parameters/{id}"),
                None,
                Some(schema),
            ));
        }
    }
    failures(out)
}

fn check_responses(spec: &Docs, ours: &Docs) -> Vec<Difference> {
    let mut out = Vec::new();
    let s_op = spec_operation(spec);
    let Some(o_op) = ours.operation(OURS) else {
        return check_operation(spec, ours);
    };
    let s_responses = s_op["responses"].as_object().expect("spec responses");
    let o_responses = o_op.get("responses").and_then(Value::as_object);
    for (code, s_resp) in s_responses {
        let path = format!("responses/{code}");
        let (s_doc, s_resp) = spec.deref(SPEC_FILE, s_resp);
        let Some(o_resp) = o_responses.and_then(|r| r.get(code)) else {
            out.push(Difference::new(
                path,
                Some(&Value::String(format!(
                    "declared ({})",
                    s_resp["description"]
                ))),
                None,
            ));
            continue;
        };
        let (_, o_resp) = ours.deref(OURS, o_resp);

        // Headers: every spec header, with the same schema; ours may add only listed ones.
        let s_headers = s_resp.get("headers").and_then(Value::as_object);
        let o_headers = o_resp.get("headers").and_then(Value::as_object);
        let find_ours = |name: &str| {
            o_headers.and_then(|h| {
                h.iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
        };
        for (name, s_h) in s_headers.into_iter().flatten() {
            let s_schema = spec.canonical(s_doc, s_h);
            let o_schema = find_ours(name).map(|h| ours.canonical(OURS, &h["schema"]));
            diff(
                &format!("{path}/headers/{name}"),
                Some(&s_schema),
                o_schema.as_ref(),
                &mut out,
            );
        }
        for (name, o_h) in o_headers.into_iter().flatten() {
            let in_spec = s_headers
                .map(|h| h.keys().any(|n| n.eq_ignore_ascii_case(name)))
                .unwrap_or(false);
            if !in_spec {
                let o_schema = ours.canonical(OURS, &o_h["schema"]);
                out.push(Difference::new(
                    format!("{path}/headers/{name}"),
                    None,
                    Some(&o_schema),
                ));
            }
        }

        // Body: none where the spec has none; where it has one (the ARM error), ours is JSON
        // and names no property the spec's ErrorResponse / ErrorDetail lacks.
        let o_schema = o_resp.pointer("/content/application~1json/schema");
        match (s_resp.get("schema"), o_schema) {
            (None, None) => {}
            (None, Some(o)) => out.push(Difference::new(
                format!("{path}/body"),
                None,
                Some(&ours.canonical(OURS, o)),
            )),
            (Some(s), None) => out.push(Difference::new(
                format!("{path}/body"),
                Some(&spec.canonical(s_doc, s)),
                None,
            )),
            (Some(s), Some(o)) => {
                let s = spec.canonical(s_doc, s);
                let o = ours.canonical(OURS, o);
                for pointer in ["/properties", "/properties/error/properties"] {
                    let names = |v: &Value| -> BTreeSet<String> {
                        v.pointer(pointer)
                            .and_then(Value::as_object)
                            .map(|m| m.keys().cloned().collect())
                            .unwrap_or_default()
                    };
                    let (s_names, o_names) = (names(&s), names(&o));
                    for extra in o_names.difference(&s_names) {
                        out.push(Difference::new(
                            format!("{path}/body{pointer}/{extra}"),
                            None,
                            Some(&Value::String("declared".into())),
                        ));
                    }
                    if o_names.is_empty() {
                        out.push(Difference::new(
                            format!("{path}/body{pointer}"),
                            Some(&Value::String(format!("{s_names:?}"))),
                            None,
                        ));
                    }
                }
            }
        }
    }
    failures(out)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn fixture_records_its_source() {
    let fixture: Value = serde_json::from_str(FIXTURE).expect("fixture is JSON");
    let source = &fixture["_source"];
    assert_eq!(source["repo"], "Azure/azure-rest-api-specs");
    assert!(source["path"]
        .as_str()
        .is_some_and(|p| p.ends_with("/stable/2025-11-01/containerregistry.json")));
    assert!(source["commit"]
        .as_str()
        .is_some_and(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit())));
    assert_eq!(fixture[SPEC_FILE]["info"]["version"], "2025-11-01");
}

#[test]
fn operation_id_and_long_running_operation_match_spec() {
    assert_no_failures(
        "importImage operation",
        check_operation(&Docs::spec(), &Docs::ours()),
    );
}

#[test]
fn request_body_matches_spec() {
    assert_no_failures(
        "importImage request body",
        check_request_body(&Docs::spec(), &Docs::ours()),
    );
}

#[test]
fn required_lists_match_spec() {
    let (spec, ours) = (Docs::spec(), Docs::ours());
    let body = |docs: &Docs, doc: &'static str, reference: &str| {
        let (d, s) = docs.resolve(doc, reference);
        docs.canonical(d, s)
    };
    let s = body(&spec, SPEC_FILE, "#/definitions/ImportImageParameters");
    let o = body(&ours, OURS, "#/components/schemas/ImportImageParameters");
    // What the spec says (also a sanity check of the fixture).
    for (pointer, expected) in [
        ("/required", vec!["source"]),
        ("/properties/source/required", vec!["sourceImage"]),
        (
            "/properties/source/properties/credentials/required",
            vec!["password"],
        ),
    ] {
        let expected = Value::from(expected);
        assert_eq!(
            s.pointer(pointer),
            Some(&expected),
            "spec fixture: ImportImageParameters{pointer}"
        );
        assert_eq!(
            o.pointer(pointer),
            Some(&expected),
            "ours: ImportImageParameters{pointer} must equal the spec's {expected}"
        );
    }
}

#[test]
fn mode_enum_matches_spec() {
    let (spec, ours) = (Docs::spec(), Docs::ours());
    let (d, s) = spec.resolve(SPEC_FILE, "#/definitions/ImportImageParameters");
    let s = spec.canonical(d, s);
    let (d, o) = ours.resolve(OURS, "#/components/schemas/ImportImageParameters");
    let o = ours.canonical(d, o);
    let s_mode = s.pointer("/properties/mode");
    assert_eq!(
        s_mode.and_then(|m| m.get("enum")),
        Some(&serde_json::json!(["Force", "NoForce"])),
        "spec fixture: mode enum"
    );
    let mut out = Vec::new();
    diff(
        "ImportImageParameters/properties/mode",
        s_mode,
        o.pointer("/properties/mode"),
        &mut out,
    );
    assert_no_failures("importImage mode", failures(out));
}

#[test]
fn parameters_match_spec() {
    let spec = Docs::spec();
    // What the spec says (also a sanity check of the fixture).
    let s_params = parameters(&spec, SPEC_FILE, spec_operation(&spec));
    let get = |id: &str| {
        s_params
            .iter()
            .find(|(i, _, _)| i == id)
            .map(|(_, _, s)| s.clone())
            .unwrap_or_else(|| panic!("spec fixture: no parameter {id}"))
    };
    assert_eq!(
        get("path:registryname"),
        serde_json::json!({"type": "string", "minLength": 5, "maxLength": 50, "pattern": "^[a-zA-Z0-9]*$"})
    );
    assert_eq!(
        get("path:resourcegroupname"),
        serde_json::json!({"type": "string", "minLength": 1, "maxLength": 90, "pattern": r"^[-\w\._\(\)]+$"})
    );
    assert_eq!(
        get("path:subscriptionid"),
        serde_json::json!({"type": "string", "format": "uuid"})
    );
    assert_eq!(
        get("query:api-version"),
        serde_json::json!({"type": "string", "minLength": 1})
    );
    assert_no_failures(
        "importImage parameters",
        check_parameters(&spec, &Docs::ours()),
    );
}

#[test]
fn spec_responses_are_declared() {
    let spec = Docs::spec();
    let codes: Vec<&String> = spec_operation(&spec)["responses"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .collect();
    assert_eq!(
        codes,
        ["200", "202", "default"],
        "spec fixture: response codes"
    );
    assert_no_failures(
        "importImage responses",
        check_responses(&spec, &Docs::ours()),
    );
}

/// Our document as JSON.
fn ours_json() -> Value {
    acr_api::openapi::document()
}

/// `doc[pointer]`, which the test expects to exist.
fn at<'a>(doc: &'a mut Value, pointer: &str) -> &'a mut Value {
    doc.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("our document has no {pointer}"))
}

/// The comparison must notice a divergence: each mutation of our document adds a failure that
/// the unmutated document does not have.
#[test]
fn comparison_detects_divergence() {
    type Check = fn(&Docs, &Docs) -> Vec<Difference>;
    type Mutation = Box<dyn Fn(&mut Value)>;
    let spec = Docs::spec();
    let all = |ours: &Docs| -> BTreeSet<Difference> {
        let checks: [Check; 4] = [
            check_operation,
            check_request_body,
            check_parameters,
            check_responses,
        ];
        checks.iter().flat_map(|c| c(&spec, ours)).collect()
    };
    let base_doc = ours_json();
    let baseline = all(&Docs::from_ours(base_doc.clone()));
    let op = format!("/paths/{}/post", IMPORT_PATH.replace('/', "~1"));
    let params = format!("{op}/parameters");
    let responses = format!("{op}/responses");
    let schemas = "/components/schemas";

    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "mode enum loses Force",
            Box::new(move |d: &mut Value| {
                at(d, &format!("{schemas}/ImportImageParameters/properties"))["mode"] = serde_json::json!({"type": "string", "enum": ["NoForce"], "default": "NoForce"});
            }),
        ),
        (
            "password no longer required",
            Box::new(move |d: &mut Value| {
                if let Some(m) =
                    at(d, &format!("{schemas}/ImportSourceCredentials")).as_object_mut()
                {
                    m.remove("required");
                }
            }),
        ),
        (
            "ImportSource gains a property",
            // ImportSource is a `oneOf` of its two shapes (by address, by resource id).
            Box::new(move |d: &mut Value| {
                for shape in 0..2 {
                    at(
                        d,
                        &format!("{schemas}/ImportSource/oneOf/{shape}/properties"),
                    )["tag"] = serde_json::json!({"type": "string"});
                }
            }),
        ),
        (
            "sourceImage becomes an integer",
            Box::new(move |d: &mut Value| {
                for shape in 0..2 {
                    at(
                        d,
                        &format!("{schemas}/ImportSource/oneOf/{shape}/properties/sourceImage"),
                    )["type"] = "integer".into();
                }
            }),
        ),
        (
            "registryName pattern changes",
            Box::new({
                let params = params.clone();
                move |d: &mut Value| {
                    for p in at(d, &params).as_array_mut().into_iter().flatten() {
                        if p["name"] == "registryName" {
                            p["schema"]["pattern"] = "^[a-z]*$".into();
                        }
                    }
                }
            }),
        ),
        (
            "an extra required query parameter",
            Box::new({
                let params = params.clone();
                move |d: &mut Value| {
                    if let Some(a) = at(d, &params).as_array_mut() {
                        a.push(serde_json::json!({"name": "force", "in": "query", "required": true, "schema": {"type": "boolean"}}));
                    }
                }
            }),
        ),
        (
            "202 loses Location",
            Box::new({
                let responses = responses.clone();
                move |d: &mut Value| {
                    if let Some(m) = at(d, &format!("{responses}/202/headers")).as_object_mut() {
                        m.remove("Location");
                    }
                }
            }),
        ),
        (
            "default response removed",
            Box::new({
                let responses = responses.clone();
                move |d: &mut Value| {
                    if let Some(m) = at(d, &responses).as_object_mut() {
                        m.remove("default");
                    }
                }
            }),
        ),
    ];

    for (name, mutate) in mutations {
        let mut doc = base_doc.clone();
        mutate(&mut doc);
        assert_ne!(doc, base_doc, "mutation {name:?} changed nothing");
        let mutated = all(&Docs::from_ours(doc));
        let new: Vec<String> = mutated
            .difference(&baseline)
            .map(ToString::to_string)
            .collect();
        assert!(
            !new.is_empty(),
            "mutation {name:?} went unnoticed by the contract comparison"
        );
    }
}
