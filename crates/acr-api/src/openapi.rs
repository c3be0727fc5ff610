//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "acr-import",
        description = "Azure Container Registry importImage emulator (ARM surface). Operations mirror Microsoft.ContainerRegistry 2025-11-01.",
        license(name = "MIT")
    ),
    paths(
        crate::health,
        crate::registries::put_registry,
        crate::registries::get_registry,
        crate::registries::update_registry,
        crate::registries::delete_registry,
        crate::registries::check_name_availability,
        crate::registries::list_credentials,
        crate::registries::list_by_group,
        crate::registries::list_by_subscription,
        crate::imports::import_image,
        crate::operations::operation_result,
        crate::operations::operation_status,
        crate::cloud::metadata_endpoints,
        crate::cloud::identity_token,
        crate::cloud::list_subscriptions,
        crate::cloud::get_subscription,
        crate::groups::get_group,
        crate::groups::put_group,
        crate::groups::delete_group,
        crate::groups::list_groups,
        crate::cloud::list_resources,
    ),
    components(schemas(
        acr_core::wire::ImportImageParameters,
        acr_core::wire::ImportSource,
        acr_core::wire::ImportSourceCredentials,
        acr_core::wire::ImportMode,
        acr_core::wire::Registry,
        acr_core::wire::RegistryCreateParameters,
        acr_core::wire::RegistryUpdateParameters,
        acr_core::wire::RegistryNameCheckRequest,
        acr_core::wire::RegistryNameStatus,
        acr_core::wire::RegistryListCredentialsResult,
        acr_core::wire::RegistryPassword,
        acr_core::wire::NetworkRuleSet,
        acr_core::wire::IpRule,
        acr_core::wire::SystemData,
        crate::cloud::TokenResponse,
        acr_core::wire::RegistryListResult,
        acr_core::wire::OperationStatus,
        acr_core::wire::ImportProgress,
        acr_core::wire::ErrorResponse,
        acr_core::wire::ErrorDetail,
    ))
)]
pub struct ApiDoc;

/// The document as pretty JSON with a trailing newline (the form checked in under `openapi/`).
pub fn document_json() -> String {
    let mut doc = serde_json::to_value(ApiDoc::openapi())
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
    sort_extensions(&mut doc);
    let mut s =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
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
