//! The OpenAPI document of the ARM listener: the routes' operations ([`crate::routes`], one
//! `#[utoipa::path]` per handler, which also brings the schemas it names) on top of the
//! service's description, with the constraints and error statuses of [`constraints`].

mod constraints;

use utoipa::OpenApi;

/// What the document says besides its paths.
#[derive(OpenApi)]
#[openapi(info(
    title = "acr-import",
    description = "Azure Container Registry importImage emulator (ARM surface). Operations mirror Microsoft.ContainerRegistry 2025-11-01.",
    license(name = "MIT")
))]
struct Base;

/// The document without paths, which the routes fill in.
pub(crate) fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}

/// The routes' document: every route's operation as its annotation declares it ([`document`]
/// adds the [`constraints`]).
pub struct ApiDoc;

impl OpenApi for ApiDoc {
    fn openapi() -> utoipa::openapi::OpenApi {
        crate::routes().into_openapi()
    }
}

/// The whole document (what `openapi/acr-import.json` holds): the routes' operations with the
/// constraints and error statuses of [`constraints`], extensions sorted. JSON, because some of
/// what it says (`oneOf` beside `properties`) has no place in utoipa's types.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi())
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
    constraints::apply(&mut doc);
    sort_extensions(&mut doc);
    doc
}

/// The document as pretty JSON with a trailing newline (the form checked in under `openapi/`).
pub fn document_json() -> String {
    pretty(&document())
}

/// `doc` as pretty JSON with a trailing newline.
fn pretty(doc: &serde_json::Value) -> String {
    let mut s =
        serde_json::to_string_pretty(doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

/// utoipa keeps `x-…` extensions in a hash map, so their order changes from run to run: put
/// them after the other keys, sorted, so the document is reproducible.
fn sort_extensions(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            let mut ext: Vec<(String, serde_json::Value)> = Vec::new();
            let keys: Vec<String> = map
                .keys()
                .filter(|k| k.starts_with("x-"))
                .cloned()
                .collect();
            for k in keys {
                if let Some(val) = map.remove(&k) {
                    ext.push((k, val));
                }
            }
            ext.sort_by(|a, b| a.0.cmp(&b.0));
            map.extend(ext);
            map.values_mut().for_each(sort_extensions);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(sort_extensions),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    /// Every operation of the document says what it accepts and answers
    /// ([`super::constraints::OPERATIONS`]).
    #[test]
    fn every_operation_has_its_constraints() {
        let raw = serde_json::to_value(super::ApiDoc::openapi()).expect("json");
        let ids: Vec<String> = raw["paths"]
            .as_object()
            .expect("paths")
            .values()
            .flat_map(|item| item.as_object().into_iter().flat_map(|m| m.values()))
            .filter_map(|op| op["operationId"].as_str().map(str::to_owned))
            .collect();
        assert!(ids.len() > 20, "{ids:?}");
        for id in &ids {
            assert!(
                super::constraints::rules(id).is_some(),
                "operation {id} is not in openapi/constraints.rs OPERATIONS"
            );
        }
    }

    /// The checked-in document must match the code. Run with `UPDATE_OPENAPI=1` to rewrite it.
    #[test]
    fn openapi_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/acr-import.json");
        let generated = super::document_json();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).expect("write openapi document");
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "openapi/acr-import.json is out of date: run `UPDATE_OPENAPI=1 cargo test -p acr-api openapi`"
        );
    }
}
