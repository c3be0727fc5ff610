//! What the server enforces that the routes' annotations do not each spell out, applied to the
//! generated document in one pass so that it is said once: the path parameters every ARM route
//! shares (by name), the api-versions each operation accepts (from `acr_core::arm`'s lists, the
//! ones its handler checks), the query parameters whose grammar lives in a handler (the same
//! pattern constant the handler matches), and the error statuses each operation can answer,
//! all with the ARM error schema.
//!
//! [`OPERATIONS`] names every operation of the document; a test fails when a route is added
//! without saying here what it accepts and answers.

use acr_core::arm::{IMPORT_API_VERSIONS, REGISTRY_ONLY_API_VERSIONS, RESOURCE_GROUP_PATTERN};
use serde_json::{json, Map, Value};

/// Which api-versions an operation accepts: what its handler checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Versions {
    /// `ApiSurface::Import`: `importImage`.
    Import,
    /// `ApiSurface::Registry`: the registry resource and the operation URLs.
    Registry,
    /// Microsoft.Resources (resource group writes): any non-blank value.
    Resources,
    /// Not checked (the parameter, if declared, is optional and free).
    Unchecked,
}

/// Every operation: its api-versions and the error statuses it can answer (besides the ones
/// its annotation declares).
pub(crate) const OPERATIONS: &[(&str, Versions, &[u16])] = &[
    (
        "Registries_ImportImage",
        Versions::Import,
        &[400, 401, 403, 404, 409, 413, 415, 429, 503],
    ),
    (
        "Registries_Create",
        Versions::Registry,
        &[400, 401, 403, 409, 413, 415, 503],
    ),
    (
        "Registries_Get",
        Versions::Registry,
        &[400, 401, 403, 404, 503],
    ),
    (
        "Registries_Update",
        Versions::Registry,
        &[400, 401, 403, 404, 409, 413, 415, 503],
    ),
    (
        "Registries_Delete",
        Versions::Registry,
        &[400, 401, 403, 409, 503],
    ),
    (
        "Registries_ListCredentials",
        Versions::Registry,
        &[400, 401, 403, 404, 409, 503],
    ),
    ("Registries_List", Versions::Registry, &[400, 401, 403, 503]),
    (
        "Registries_ListByResourceGroup",
        Versions::Registry,
        &[400, 401, 403, 503],
    ),
    (
        "Registries_CheckNameAvailability",
        Versions::Registry,
        &[400, 401, 403, 413, 415, 503],
    ),
    (
        "OperationResults_Get",
        Versions::Registry,
        &[400, 401, 403, 404, 409, 500, 502, 503],
    ),
    (
        "OperationStatuses_Get",
        Versions::Registry,
        &[400, 401, 403, 404, 503],
    ),
    (
        "ResourceGroups_CreateOrUpdate",
        Versions::Resources,
        &[400, 401, 403, 409, 413, 415, 503],
    ),
    (
        "ResourceGroups_Get",
        Versions::Unchecked,
        &[400, 401, 403, 404, 503],
    ),
    (
        "ResourceGroups_List",
        Versions::Unchecked,
        &[400, 401, 403, 503],
    ),
    (
        "ResourceGroups_Delete",
        Versions::Resources,
        &[400, 401, 403, 404, 409, 503],
    ),
    (
        "get_subscription",
        Versions::Unchecked,
        &[400, 401, 403, 404, 503],
    ),
    ("list_subscriptions", Versions::Unchecked, &[401, 403, 503]),
    ("list_resources", Versions::Unchecked, &[400, 401, 403, 503]),
    ("metadata_endpoints", Versions::Unchecked, &[400]),
    ("identity_token", Versions::Unchecked, &[400]),
    (
        "Feed_ListOperations",
        Versions::Unchecked,
        &[400, 401, 403, 503],
    ),
    (
        "Feed_OperationEvents",
        Versions::Unchecked,
        &[400, 401, 403, 503],
    ),
    ("Portal_Config", Versions::Unchecked, &[]),
    ("health", Versions::Unchecked, &[503]),
    ("live", Versions::Unchecked, &[]),
    ("ready", Versions::Unchecked, &[503]),
    ("metrics", Versions::Unchecked, &[404]),
];

/// `format: uuid`, as ARM's common types declare `subscriptionId` (the server wants the
/// hyphenated 36-character form, which is what the format means).
fn uuid() -> Value {
    json!({"type": "string", "format": "uuid"})
}

/// The schema of a path parameter shared by the ARM routes, by name.
fn path_schema(name: &str) -> Option<Value> {
    Some(match name {
        "subscriptionId" => uuid(),
        "resourceGroupName" => json!({"type": "string", "minLength": 1, "maxLength": 90,
                                      "pattern": RESOURCE_GROUP_PATTERN}),
        "registryName" => json!({"type": "string", "minLength": 5, "maxLength": 50,
                                 "pattern": "^[a-zA-Z0-9]*$"}),
        // `registries-<id>` (the prefix every operation id has; anything else is 404).
        "operationId" => {
            json!({"type": "string", "maxLength": 100, "pattern": "^registries-[^\\x00]*$"})
        }
        _ => return None,
    })
}

fn api_versions(v: Versions) -> Option<Value> {
    fn list(extra: &[&'static str]) -> Vec<&'static str> {
        let mut all: Vec<&'static str> = IMPORT_API_VERSIONS.iter().chain(extra).copied().collect();
        all.sort_unstable();
        all
    }
    Some(match v {
        Versions::Import => json!({"type": "string", "minLength": 1, "enum": list(&[])}),
        Versions::Registry => {
            json!({"type": "string", "minLength": 1, "enum": list(REGISTRY_ONLY_API_VERSIONS)})
        }
        Versions::Resources => json!({"type": "string", "minLength": 1, "pattern": r"\S"}),
        Versions::Unchecked => return None,
    })
}

/// Query and header parameters whose grammar a handler checks: (operation, `in`, name,
/// schema, required).
fn special_parameters() -> Vec<(&'static str, &'static str, &'static str, Value, bool)> {
    vec![
        (
            "identity_token",
            "header",
            "Metadata",
            json!({"type": "string", "enum": ["true"]}),
            true,
        ),
        (
            "identity_token",
            "query",
            "resource",
            json!({"type": "string", "minLength": 1, "maxLength": crate::cloud::MAX_RESOURCE_CHARS,
                   "pattern": r"\S"}),
            true,
        ),
        ("identity_token", "query", "object_id", uuid(), false),
        (
            "list_resources",
            "query",
            "$filter",
            json!({"type": "string", "pattern": crate::cloud::FILTER_PATTERN}),
            false,
        ),
        (
            "Feed_ListOperations",
            "query",
            "registry",
            json!({"type": "string", "pattern": crate::feed::REGISTRY_FILTER_PATTERN}),
            false,
        ),
        (
            "Feed_ListOperations",
            "query",
            "state",
            json!({"type": "string", "enum": crate::feed::STATE_FILTERS}),
            false,
        ),
        (
            "Feed_ListOperations",
            "query",
            "top",
            json!({"type": "integer", "format": "int32", "minimum": 1, "maximum": crate::feed::MAX_TOP}),
            false,
        ),
        (
            "Feed_ListOperations",
            "query",
            "skipToken",
            json!({"type": "string", "pattern": crate::feed::SKIP_TOKEN_PATTERN}),
            false,
        ),
        (
            "Feed_OperationEvents",
            "header",
            "Last-Event-ID",
            json!({"type": "string", "pattern": crate::feed::EVENT_ID_PATTERN}),
            false,
        ),
        (
            "Feed_OperationEvents",
            "query",
            "lastEventId",
            json!({"type": "string", "pattern": crate::feed::EVENT_ID_PATTERN}),
            false,
        ),
    ]
}

fn status_description(code: u16) -> &'static str {
    match code {
        400 => "A path or query parameter, the api-version or the body is invalid (the ARM error code says which)",
        401 => "No bearer token, or one that is not valid (`--auth arm-rbac`)",
        403 => "The caller's role assignments do not allow the action (`--auth arm-rbac`), or a registry's network rules refuse it",
        404 => "The resource (or the subscription, resource group or operation) does not exist",
        409 => "Conflict with the resource's state (e.g. the registry is being deleted, or its name is taken)",
        413 => "The request body is larger than 4 MiB",
        415 => "The body is not `application/json`",
        429 => "A queue limit is reached; retry after `Retry-After` seconds",
        500 => "The operation failed inside the emulator (the stored error)",
        502 => "The operation failed writing to the target registry (the stored error)",
        503 => "The database is unavailable; retry after `Retry-After` seconds",
        _ => "Error",
    }
}

fn error_response(code: u16) -> Value {
    let mut r = json!({
        "description": status_description(code),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    });
    if matches!(code, 429 | 503) {
        r["headers"] = json!({"Retry-After": {
            "description": "Seconds to wait before retrying",
            "schema": {"type": "integer", "format": "int32", "minimum": 0}
        }});
    }
    r
}

/// The rules of operation `id`.
pub(crate) fn rules(id: &str) -> Option<(Versions, &'static [u16])> {
    OPERATIONS
        .iter()
        .find(|(name, _, _)| *name == id)
        .map(|(_, v, codes)| (*v, *codes))
}

/// The rules of the `importImage` body that its types do not carry: the grammar of each
/// string (`acr_core::patterns`), the lengths and counts `ImportSpec` checks, and that a
/// source names exactly one of `resourceId` and `registryUri`.
fn import_body(schemas: &mut Map<String, Value>) {
    use acr_core::import::{MAX_PASSWORD_CHARS, MAX_TARGETS, MAX_USERNAME_CHARS};
    use acr_core::patterns;
    let mut set = |schema: &str, pointer: &str, key: &str, value: Value| {
        if let Some(Value::Object(o)) = schemas.get_mut(schema).and_then(|s| s.pointer_mut(pointer))
        {
            o.insert(key.to_owned(), value);
        }
    };
    let source = "ImportSource";
    set(
        source,
        "/properties/sourceImage",
        "pattern",
        patterns::source_image().into(),
    );
    // The repository of a reference is at most 255 characters; the pattern cannot count it,
    // so the document bounds the whole reference (a longer one may still be accepted).
    let max_repo = acr_core::reference::MAX_REPOSITORY_LEN;
    set(
        source,
        "/properties/sourceImage",
        "maxLength",
        max_repo.into(),
    );
    set(
        source,
        "/properties/registryUri",
        "pattern",
        patterns::registry_uri().into(),
    );
    set(
        source,
        "/properties/resourceId",
        "pattern",
        patterns::resource_id().into(),
    );
    let creds = "ImportSourceCredentials";
    set(creds, "/properties/password", "minLength", 1.into());
    let no_nul = Value::from(crate::registries::TAG_TEXT_PATTERN);
    set(creds, "/properties/password", "pattern", no_nul.clone());
    set(creds, "/properties/username", "pattern", no_nul);
    set(
        creds,
        "/properties/password",
        "maxLength",
        MAX_PASSWORD_CHARS.into(),
    );
    set(
        creds,
        "/properties/username",
        "maxLength",
        MAX_USERNAME_CHARS.into(),
    );
    let params = "ImportImageParameters";
    set(
        params,
        "/properties/targetTags",
        "maxItems",
        MAX_TARGETS.into(),
    );
    set(
        params,
        "/properties/targetTags/items",
        "pattern",
        patterns::target_tag().into(),
    );
    set(
        params,
        "/properties/targetTags/items",
        "maxLength",
        max_repo.into(),
    );
    let untagged = "/properties/untaggedTargetRepositories";
    set(params, untagged, "maxItems", MAX_TARGETS.into());
    let items = format!("{untagged}/items");
    set(
        params,
        &items,
        "pattern",
        patterns::repository_name().into(),
    );
    set(
        params,
        &items,
        "maxLength",
        acr_core::reference::MAX_REPOSITORY_LEN.into(),
    );
    // A source names exactly one of `resourceId` and `registryUri` (400 otherwise): two shapes,
    // each the whole object without the other key (a `oneOf` of bare `required` lists is the
    // same contract, but tools cannot generate a valid body from it).
    if let Some(Value::Object(whole)) = schemas.get(source).cloned() {
        let shape = |without: &str, with: &str| {
            let mut o = whole.clone();
            if let Some(Value::Object(props)) = o.get_mut("properties") {
                props.remove(without);
            }
            o.insert("required".into(), json!(["sourceImage", with]));
            o.remove("description");
            Value::Object(o)
        };
        let mut split = Map::new();
        if let Some(d) = whole.get("description") {
            split.insert("description".into(), d.clone());
        }
        split.insert(
            "oneOf".into(),
            json!([
                shape("resourceId", "registryUri"),
                shape("registryUri", "resourceId")
            ]),
        );
        schemas.insert(source.to_owned(), Value::Object(split));
    }
}

/// The rules of the other bodies: regions, SKU names, tags, the name check's type.
fn resource_bodies(schemas: &mut Map<String, Value>) {
    use crate::registries::{MAX_TAGS, MAX_TAG_NAME_CHARS, MAX_TAG_VALUE_CHARS};
    let mut set = |schema: &str, pointer: &str, key: &str, value: Value| {
        if let Some(Value::Object(o)) = schemas.get_mut(schema).and_then(|s| s.pointer_mut(pointer))
        {
            o.insert(key.to_owned(), value);
        }
    };
    let location = Value::from(acr_core::arm::LOCATION_PATTERN);
    set(
        "RegistryCreateParameters",
        "/properties/location",
        "pattern",
        location.clone(),
    );
    set(
        "ResourceGroupParameters",
        "/properties/location",
        "pattern",
        location,
    );
    set(
        "SkuInput",
        "/properties/name",
        "enum",
        json!(["Classic", "Basic", "Standard", "Premium"]),
    );
    set(
        "RegistryNameCheckRequest",
        "/properties/type",
        "enum",
        json!([acr_core::arm::REGISTRY_TYPE]),
    );
    for schema in [
        "RegistryCreateParameters",
        "RegistryUpdateParameters",
        "ResourceGroupParameters",
    ] {
        set(schema, "/properties/tags", "maxProperties", MAX_TAGS.into());
        set(
            schema,
            "/properties/tags",
            "propertyNames",
            json!({"type": "string", "minLength": 1, "maxLength": MAX_TAG_NAME_CHARS,
                   "pattern": crate::registries::TAG_TEXT_PATTERN}),
        );
        set(
            schema,
            "/properties/tags",
            "additionalProperties",
            json!({"type": "string", "maxLength": MAX_TAG_VALUE_CHARS,
                   "pattern": crate::registries::TAG_TEXT_PATTERN}),
        );
    }
}

/// Applies the constraints and statuses to a serialized document.
pub(crate) fn apply(doc: &mut Value) {
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        import_body(schemas);
        resource_bodies(schemas);
    }
    let special = special_parameters();
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let id = op
                .get("operationId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let Some((versions, codes)) = rules(&id) else {
                continue;
            };
            if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                for p in params.iter_mut() {
                    constrain_parameter(p, &id, versions, &special);
                }
            }
            let responses = op
                .entry("responses")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(responses) = responses.as_object_mut() {
                for code in codes {
                    responses
                        .entry(code.to_string())
                        .or_insert_with(|| error_response(*code));
                }
            }
        }
    }
}

fn constrain_parameter(
    p: &mut Value,
    op: &str,
    versions: Versions,
    special: &[(&str, &str, &str, Value, bool)],
) {
    let name = p["name"].as_str().unwrap_or_default().to_owned();
    let location = p["in"].as_str().unwrap_or_default().to_owned();
    let (schema, required) = match location.as_str() {
        "path" => match path_schema(&name) {
            Some(s) => (s, true),
            None => return,
        },
        "query" if name == "api-version" => match api_versions(versions) {
            Some(s) => (s, true),
            None => return,
        },
        _ => match special
            .iter()
            .find(|(o, l, n, _, _)| *o == op && *l == location && *n == name)
        {
            Some((_, _, _, s, r)) => (s.clone(), *r),
            None => return,
        },
    };
    p["schema"] = schema;
    p["required"] = Value::Bool(required);
}
