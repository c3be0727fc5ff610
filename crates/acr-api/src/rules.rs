//! The service rules an import must pass before it is accepted: the target's SKU, where the
//! source is, and the network rules of both registries (as documented for ACR: a
//! network-restricted registry takes part in an import only through the trusted-services
//! bypass, a registry with public access disabled is a source only by `resourceId`, and
//! cross-tenant style credentials cannot reach such a registry).

use acr_core::arm::{RegistryId, REGISTRY_TYPE};
use acr_core::import::ImportSpec;
use acr_store::{RegistryRecord, ResolvedSource};
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::AppState;

/// The emulated registry an import reads from, and how it was named.
#[derive(Debug, Clone)]
pub struct EmulatedSource {
    pub id: RegistryId,
    pub by_resource_id: bool,
}

fn login_server(r: &RegistryRecord, suffix: &str) -> String {
    format!("{}.{suffix}", r.name_lower)
}

fn network_denied(code: &str, message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, code, message)
}

fn restriction(r: &RegistryRecord) -> &'static str {
    if r.props().public_access_disabled() {
        "public network access is disabled"
    } else {
        "its firewall denies access by default (networkRuleSet.defaultAction: Deny)"
    }
}

/// Checks the rules; returns the emulated source registry, if the source is one.
pub async fn check_import(
    state: &AppState,
    target: &RegistryRecord,
    spec: &ImportSpec,
    has_credentials: bool,
) -> Result<Option<EmulatedSource>, ApiError> {
    let suffix = &state.config.login_server_suffix;
    if target.sku.eq_ignore_ascii_case("Classic") {
        return Err(ApiError::bad_request(
            "UnsupportedSku",
            format!(
                "Imports are only supported for managed registries. The registry '{}' has the Classic SKU; use Basic, Standard or Premium.",
                target.name
            ),
        ));
    }
    let tp = target.props();
    if tp.network_restricted() && !tp.bypasses_for_azure_services() {
        return Err(network_denied(
            "TargetRegistryNetworkRestricted",
            format!(
                "The target registry '{}' is network-restricted ({}) and its networkRuleBypassOptions is 'None'. Importing into a network-restricted registry requires allowing trusted Azure services: set networkRuleBypassOptions to 'AzureServices'.",
                target.name,
                restriction(target)
            ),
        ));
    }

    let (record, by_resource_id) = match state.store.resolve_source(&spec.source, suffix).await? {
        ResolvedSource::Emulated {
            record,
            by_resource_id,
        } => (record, by_resource_id),
        ResolvedSource::Missing(src) => {
            return Err(ApiError::resource_not_found(
                REGISTRY_TYPE,
                &src.name,
                &src.resource_group,
            )
            .with_target("source.resourceId"));
        }
        // A registry being deleted is gone for its readers: the worker says so.
        ResolvedSource::Deleted(_) => return Ok(None),
        ResolvedSource::External(addr) => {
            // SSRF: an IP-literal source the network policy refuses is never queued (names
            // are checked when the worker resolves them).
            if let Err(r) = state.config.source_network.check_host(&addr.host) {
                return Err(ApiError::bad_request(
                    "InvalidParameter",
                    format!(
                        "The source registry '{}' cannot be imported from: {r}.",
                        addr.authority()
                    ),
                )
                .with_target("source.registryUri"));
            }
            return Ok(None);
        }
    };
    if by_resource_id {
        // With a resourceId, sourceImage names a repository of that registry: a login
        // server in front of it is a mistake the service reports.
        let first = spec
            .source_image
            .repository
            .as_str()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let has_more = spec.source_image.repository.as_str().contains('/');
        if has_more
            && (first.ends_with(&format!(".{suffix}"))
                || first == "docker.io"
                || first == "mcr.microsoft.com")
        {
            return Err(ApiError::bad_request(
                "InvalidParameters",
                format!(
                    "The source image '{}' starts with the registry login server '{first}'. When source.resourceId is given, sourceImage must name a repository in that registry without its login server, e.g. '{}'.",
                    spec.source_image,
                    spec.source_image
                        .to_string()
                        .split_once('/')
                        .map(|(_, rest)| rest.to_owned())
                        .unwrap_or_default()
                ),
            )
            .with_target("source.sourceImage"));
        }
    }
    let sp = record.props();
    let server = login_server(&record, suffix);
    if sp.public_access_disabled() && !by_resource_id {
        let message = if has_credentials {
            format!(
                "The source registry '{server}' has public network access disabled. Cross-tenant import over public access disabled registry is not supported. Import it by source.resourceId from the same tenant."
            )
        } else {
            format!(
                "The source registry '{server}' has public network access disabled: it can be a source only by its resource id (source.resourceId), with networkRuleBypassOptions 'AzureServices'."
            )
        };
        return Err(network_denied("SourceRegistryNetworkRestricted", message));
    }
    if sp.network_restricted() && !sp.bypasses_for_azure_services() {
        return Err(network_denied(
            "SourceRegistryNetworkRestricted",
            format!(
                "The source registry '{server}' is network-restricted ({}) and its networkRuleBypassOptions is 'None'. Importing from a network-restricted registry requires allowing trusted Azure services: set networkRuleBypassOptions to 'AzureServices'.",
                restriction(&record)
            ),
        ));
    }
    Ok(Some(EmulatedSource {
        id: record.id(),
        by_resource_id,
    }))
}
