//! The OpenAPI document of the login servers (`openapi/registry.json`, printed by
//! `acr-import openapi --registry`): every route [`crate::FrontDoor::router`] serves, as a
//! client of `<registry>.<suffix>` sees it — the `/v2` distribution API passed through to the
//! backend, ACR's `/acr/v1` data plane and its token service.
//!
//! The routes are `any` handlers that parse their paths by hand (names hold `/`), so there is
//! no per-handler annotation to generate from: the document is written here, next to the
//! router, with the grammar the handlers check (the repository names of
//! `request::valid_repository`, a test keeps them equal). Paths are written for the login-server
//! view (`Host: <registry>.<suffix>`); on any other host the root view takes
//! `<registry>/<repository>` as the name. A `{name}` with `/` is sent percent-encoded
//! (`team%2Fapp`), which every route decodes. Errors are the distribution spec's
//! `{"errors":[{"code","message","detail"}]}`.

use serde_json::{json, Map, Value};

/// A repository name as the login servers accept it: components of lowercase letters, digits
/// and `._-`, each starting and ending with a letter or digit, joined by `/`; at most 256
/// characters (`request::valid_repository`).
pub const REPOSITORY_PATTERN: &str =
    r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?(?:/[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?)*$";
/// A digest: `<algorithm>:<hex>` (sha256 or sha512, as the registry verifies them).
pub const DIGEST_PATTERN: &str = "^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$";
/// A tag (the distribution spec's grammar).
pub const TAG_PATTERN: &str = "^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$";

/// The media types a manifest is pushed and served as.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

fn string(pattern: &str) -> Value {
    json!({"type": "string", "pattern": pattern})
}

/// The longest repository name every login server takes: the backend holds it as
/// `<registry>/<name>`, at most 255 characters, and a registry name has up to 50.
pub const MAX_NAME_LEN: usize = acr_core::reference::MAX_REPOSITORY_LEN - 51;

fn name_param() -> Value {
    json!({"name": "name", "in": "path", "required": true,
           "description": format!("Repository name (percent-encode `/`). With the registry's name and a `/` it is at most {} characters: {MAX_NAME_LEN} fit every registry (a 50-character registry name leaves exactly that).", acr_core::reference::MAX_REPOSITORY_LEN),
           "schema": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN, "pattern": REPOSITORY_PATTERN}})
}

fn path_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// `n` and `last`; `nul_refused`: the front door reads `last` itself (its catalogs and
/// `/acr/v1` lists, where a NUL is refused), not the backend (`/v2/{name}/tags/list`).
fn paging_params_of(nul_refused: bool) -> Vec<Value> {
    let last = if nul_refused {
        json!({"type": "string", "pattern": "^[^\\x00]*$"})
    } else {
        json!({"type": "string"})
    };
    vec![
        query_param(
            "n",
            "Page size",
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
        ),
        query_param("last", "The last name of the previous page", last),
    ]
}

fn paging_params() -> Vec<Value> {
    paging_params_of(true)
}

fn errors(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}})
}

/// The error statuses of a route, each with the registry's error body.
fn with_errors(mut responses: Map<String, Value>, codes: &[u16]) -> Value {
    for code in codes {
        let description = match code {
            400 => "Invalid name, reference, digest, body or parameter",
            401 => "Authentication required (`WWW-Authenticate: Bearer realm=…,service=…`)",
            403 => "Denied: the caller's rights, or a `changeableAttributes` lock",
            404 => "Unknown registry, repository, manifest, tag, blob or upload",
            405 => {
                "Refused here (a `changeableAttributes` lock, or a method the route does not take)"
            }
            409 => "Conflict",
            413 => "The body is too large",
            415 => "Unsupported media type",
            416 => "The range cannot be satisfied",
            502 => "The backend registry failed",
            503 => "The registry's database is unavailable; retry after `Retry-After` seconds",
            507 => "The built-in registry is out of disk space",
            _ => "Error",
        };
        responses.insert(code.to_string(), errors(description));
    }
    Value::Object(responses)
}

fn responses(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn json_ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn plain(description: &str) -> Value {
    json!({"description": description})
}

fn op(id: &str, summary: &str, params: Vec<Value>, responses: Value) -> Value {
    json!({"operationId": id, "summary": summary, "tags": [tag_of(id)],
           "parameters": params, "responses": responses})
}

fn tag_of(id: &str) -> &'static str {
    if id.starts_with("V2") {
        "distribution"
    } else if id.starts_with("Acr") {
        "acr"
    } else {
        "oauth2"
    }
}

/// A manifest's body: the usual media types, and any other (a manifest is stored and served
/// with the `Content-Type` it was pushed with, as OCI artifacts need).
fn manifest_content(schema: &Value) -> Value {
    Value::Object(
        MANIFEST_TYPES
            .iter()
            .chain(&["*/*"])
            .map(|t| ((*t).to_owned(), json!({"schema": schema})))
            .collect(),
    )
}

fn form(schema: Value) -> Value {
    json!({"required": true, "content": {"application/x-www-form-urlencoded": {"schema": schema}}})
}

fn attributes_body() -> Value {
    json!({"required": false, "content": {"application/json": {"schema":
        {"$ref": "#/components/schemas/ChangeableAttributes"}}}})
}

fn v2_paths() -> Map<String, Value> {
    let name = name_param;
    let reference = || {
        path_param(
            "reference",
            "A tag or a digest",
            json!({"type": "string", "pattern": format!("{}|{}", TAG_PATTERN, DIGEST_PATTERN)}),
        )
    };
    let digest = || path_param("digest", "A blob digest", string(DIGEST_PATTERN));
    let manifest = json!({"type": "object"});
    let mut p = Map::new();
    p.insert("/v2/".into(), json!({
        "get": op("V2_Ping", "API version check (401 with the challenge when the listener requires a login)", vec![],
                  with_errors(responses(&[("200", json_ok("The registry speaks distribution v2", json!({"type": "object"})))]), &[401]))
    }));
    p.insert("/v2/_catalog".into(), json!({
        "get": op("V2_Catalog", "Repositories of the registry", paging_params(),
                  with_errors(responses(&[("200", json_ok("A page of repositories (`Link` to the next)",
                      json!({"type": "object", "properties": {"repositories": {"type": "array", "items": {"type": "string"}}}})))]),
                      &[400, 401, 403, 404, 503]))
    }));
    p.insert("/v2/{name}/tags/list".into(), json!({
        "get": op("V2_ListTags", "Tags of a repository",
                  [vec![name()], paging_params_of(false)].concat(),
                  with_errors(responses(&[("200", json_ok("A page of tags (`Link` to the next)",
                      json!({"type": "object", "properties": {"name": {"type": "string"},
                             "tags": {"type": ["array", "null"], "items": {"type": "string"}}}})))]),
                      &[400, 401, 403, 404, 405, 502, 503]))
    }));
    p.insert("/v2/{name}/manifests/{reference}".into(), json!({
        "get": op("V2_GetManifest", "A manifest, as pushed", vec![name(), reference()],
                  with_errors(responses(&[("200", json!({"description": "The manifest's bytes; `Docker-Content-Digest` is their digest",
                                                         "content": manifest_content(&manifest)}))]),
                      &[400, 401, 403, 404, 405, 502, 503])),
        "put": {
            "operationId": "V2_PutManifest", "summary": "Push a manifest (by tag or digest); everything it references must be in the repository",
            "tags": ["distribution"], "parameters": [name(), reference()],
            "requestBody": {"required": true, "content": manifest_content(&manifest)},
            "responses": with_errors(responses(&[("201", plain("Stored; `Location` and `Docker-Content-Digest` say where"))]),
                &[400, 401, 403, 404, 405, 413, 502, 503, 507])
        },
        "delete": op("V2_DeleteManifest", "Delete a manifest (by digest) or a tag", vec![name(), reference()],
                     with_errors(responses(&[("202", plain("Deleted"))]), &[400, 401, 403, 404, 405, 502, 503]))
    }));
    p.insert("/v2/{name}/blobs/{digest}".into(), json!({
        "get": op("V2_GetBlob", "A blob (Range supported)", vec![name(), digest()],
                  with_errors(responses(&[
                      ("200", json!({"description": "The blob", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})),
                      ("206", json!({"description": "The range asked for", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})),
                  ]), &[400, 401, 403, 404, 405, 416, 502, 503])),
        "delete": op("V2_DeleteBlob", "Delete a blob from a repository", vec![name(), digest()],
                     with_errors(responses(&[("202", plain("Deleted"))]), &[400, 401, 403, 404, 405, 502, 503]))
    }));
    p.insert("/v2/{name}/blobs/uploads/".into(), json!({
        "post": op("V2_StartUpload", "Start an upload; with `digest` a whole blob in one request, with `mount` and `from` a cross-repository mount",
                   vec![name(),
                        query_param("digest", "Digest of the body (single-request upload)", string(DIGEST_PATTERN)),
                        query_param("mount", "Digest of a blob to mount", string(DIGEST_PATTERN)),
                        query_param("from", "Repository to mount from (with `mount`); one that cannot be mounted from starts a plain upload", json!({"type": "string"}))],
                   with_errors(responses(&[("201", plain("Stored (a single-request upload or a mount)")),
                                            ("202", plain("Upload session started; `Location` is its URL"))]),
                       &[400, 401, 403, 404, 413, 502, 503, 507]))
    }));
    let session = || {
        path_param(
            "uuid",
            "The upload session",
            json!({"type": "string", "minLength": 1}),
        )
    };
    p.insert("/v2/{name}/blobs/uploads/{uuid}".into(), json!({
        "get": op("V2_UploadStatus", "An upload's progress (`Range`)", vec![name(), session()],
                  with_errors(responses(&[("204", plain("In progress; `Range` says what was received"))]), &[400, 401, 403, 404, 502, 503])),
        "patch": {
            "operationId": "V2_UploadChunk", "summary": "Append a chunk", "tags": ["distribution"],
            "parameters": [name(), session()],
            "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": with_errors(responses(&[("202", plain("Appended; `Range` says what was received"))]), &[400, 401, 403, 404, 413, 416, 502, 503, 507])
        },
        "put": {
            "operationId": "V2_FinishUpload", "summary": "Finish an upload: the digest of everything sent must be `digest`",
            "tags": ["distribution"],
            "parameters": [name(), session(),
                           {"name": "digest", "in": "query", "required": true, "schema": string(DIGEST_PATTERN)}],
            "requestBody": {"required": false, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": with_errors(responses(&[("201", plain("Stored; `Location` and `Docker-Content-Digest` say where"))]), &[400, 401, 403, 404, 413, 502, 503, 507])
        },
        "delete": op("V2_CancelUpload", "Cancel an upload", vec![name(), session()],
                     with_errors(responses(&[("204", plain("Cancelled"))]), &[400, 401, 403, 404, 502, 503]))
    }));
    p.insert("/v2/{name}/referrers/{digest}".into(), json!({
        "get": op("V2_Referrers", "Manifests whose `subject` is `digest` (an OCI index)",
                  vec![name(), digest(), query_param("artifactType", "Only this artifact type", json!({"type": "string"}))],
                  with_errors(responses(&[("200", json!({"description": "An image index of the referrers",
                      "content": {"application/vnd.oci.image.index.v1+json": {"schema": {"type": "object"}}}}))]),
                      &[400, 401, 403, 404, 405, 502, 503]))
    }));
    p
}

fn acr_paths() -> Map<String, Value> {
    let name = name_param;
    let tag = || path_param("tag", "A tag", string(TAG_PATTERN));
    let digest = || path_param("digest", "A manifest digest", string(DIGEST_PATTERN));
    let orderby = || {
        query_param(
            "orderby",
            "Order by last update (any case; empty or `none`: by name)",
            json!({"type": "string", "enum": ["", "none", "timedesc", "timeasc"]}),
        )
    };
    let schema = |n: &str| json!({"$ref": format!("#/components/schemas/{n}")});
    // 405: a `changeableAttributes` lock (ACR's answer), on reads too (`readEnabled: false`).
    let read = &[400, 401, 403, 404, 405, 503][..];
    let write = &[400, 401, 403, 404, 405, 503][..];
    let mut p = Map::new();
    p.insert("/acr/v1/_catalog".into(), json!({
        "get": op("Acr_Catalog", "Repositories of the registry", paging_params(),
                  with_errors(responses(&[("200", json_ok("A page of repositories", schema("Repositories")))]), read))
    }));
    p.insert("/acr/v1/{name}".into(), json!({
        "get": op("Acr_GetRepository", "A repository's attributes", vec![name()],
                  with_errors(responses(&[("200", json_ok("The repository", schema("Repository")))]), read)),
        "patch": {
            "operationId": "Acr_UpdateRepository", "summary": "Change a repository's `changeableAttributes`",
            "tags": ["acr"], "parameters": [name()], "requestBody": attributes_body(),
            "responses": with_errors(responses(&[("200", json_ok("The repository", schema("Repository")))]), write)
        },
        "delete": op("Acr_DeleteRepository", "Delete a repository: its tags and manifests", vec![name()],
                     with_errors(responses(&[("202", json_ok("What was deleted", schema("DeletedRepository")))]), write))
    }));
    p.insert("/acr/v1/{name}/_tags".into(), json!({
        "get": op("Acr_ListTags", "Tags of a repository with their attributes",
                  [vec![name(), orderby()], paging_params()].concat(),
                  with_errors(responses(&[("200", json_ok("A page of tags", schema("TagList")))]), read))
    }));
    p.insert("/acr/v1/{name}/_tags/{tag}".into(), json!({
        "get": op("Acr_GetTag", "A tag's attributes", vec![name(), tag()],
                  with_errors(responses(&[("200", json_ok("The tag", schema("TagAttributes")))]), read)),
        "patch": {
            "operationId": "Acr_UpdateTag", "summary": "Change a tag's `changeableAttributes`",
            "tags": ["acr"], "parameters": [name(), tag()], "requestBody": attributes_body(),
            "responses": with_errors(responses(&[("200", json_ok("The tag", schema("TagAttributes")))]), write)
        },
        "delete": op("Acr_DeleteTag", "Delete a tag", vec![name(), tag()],
                     with_errors(responses(&[("202", plain("Deleted"))]), write))
    }));
    p.insert("/acr/v1/{name}/_manifests".into(), json!({
        "get": op("Acr_ListManifests", "Manifests of a repository with their attributes",
                  [vec![name(), orderby()], paging_params()].concat(),
                  with_errors(responses(&[("200", json_ok("A page of manifests", schema("AcrManifests")))]), read))
    }));
    p.insert("/acr/v1/{name}/_manifests/{digest}".into(), json!({
        "get": op("Acr_GetManifest", "A manifest's attributes", vec![name(), digest()],
                  with_errors(responses(&[("200", json_ok("The manifest", schema("ManifestAttributes")))]), read)),
        "patch": {
            "operationId": "Acr_UpdateManifest", "summary": "Change a manifest's `changeableAttributes`",
            "tags": ["acr"], "parameters": [name(), digest()], "requestBody": attributes_body(),
            "responses": with_errors(responses(&[("200", json_ok("The manifest", schema("ManifestAttributes")))]), write)
        }
    }));
    p
}

fn oauth_paths() -> Map<String, Value> {
    let scope = json!({"type": "string",
        "description": "`repository:<name>:<actions>` or `registry:catalog:*` (several separated by spaces); scopes of another shape grant nothing"});
    let token = json!({"type": "object", "required": ["access_token"], "properties": {
        "access_token": {"type": "string"}, "token": {"type": "string"},
        "expires_in": {"type": "integer"}, "issued_at": {"type": "string"}}});
    let mut p = Map::new();
    p.insert("/oauth2/exchange".into(), json!({
        "post": {
            "operationId": "OAuth2_Exchange",
            "summary": "An Entra access token (or a refresh token of ours) for a refresh token of this login server",
            "tags": ["oauth2"],
            "requestBody": form(json!({"type": "object", "required": ["grant_type"], "properties": {
                "grant_type": {"type": "string", "enum": ["access_token", "access_token_refresh_token", "refresh_token"]},
                "service": {"type": "string"}, "tenant": {"type": "string"},
                "access_token": {"type": "string"}, "refresh_token": {"type": "string"}}})),
            "responses": with_errors(responses(&[("200", json_ok("The refresh token",
                json!({"type": "object", "required": ["refresh_token"], "properties": {"refresh_token": {"type": "string"}}})))]),
                &[400, 401, 404, 503])
        }
    }));
    p.insert("/oauth2/token".into(), json!({
        "get": op("OAuth2_GetToken", "The docker flow: an access token for Basic credentials (or none) and the scopes asked for",
                  vec![query_param("service", "The login server", json!({"type": "string"})),
                       json!({"name": "scope", "in": "query", "required": false, "style": "form", "explode": true,
                              "description": "Scopes (the parameter may be repeated)",
                              "schema": {"type": "array", "items": scope.clone()}})],
                  with_errors(responses(&[("200", json_ok("The access token", token.clone()))]), &[400, 401, 404, 503])),
        "post": {
            "operationId": "OAuth2_Token",
            "summary": "An access token for a refresh token of ours, or for a username and password (none: anonymous)",
            "tags": ["oauth2"],
            "requestBody": form(json!({"type": "object", "required": ["grant_type"], "properties": {
                "grant_type": {"type": "string", "enum": ["refresh_token", "password"]},
                "service": {"type": "string"}, "scope": scope,
                "refresh_token": {"type": "string"}, "username": {"type": "string"}, "password": {"type": "string"}}})),
            "responses": with_errors(responses(&[("200", json_ok("The access token", token))]), &[400, 401, 404, 503])
        }
    }));
    p
}

fn schemas() -> Value {
    // `null` (or absent) leaves an attribute as it is.
    let flag = json!({"type": ["boolean", "null"]});
    let attrs = json!({"type": "object", "properties": {
        "deleteEnabled": flag, "writeEnabled": flag, "readEnabled": flag, "listEnabled": flag}});
    json!({
        "Errors": {"type": "object", "required": ["errors"], "properties": {"errors": {"type": "array", "items": {
            "type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}, "detail": {}}}}}},
        "ChangeableAttributes": attrs,
        "Repositories": {"type": "object", "properties": {"repositories": {"type": "array", "items": {"type": "string"}}}},
        "Repository": {"type": "object", "required": ["registry", "imageName", "changeableAttributes"], "properties": {
            "registry": {"type": "string"}, "imageName": {"type": "string"},
            "createdTime": {"type": "string"}, "lastUpdateTime": {"type": "string"},
            "manifestCount": {"type": "integer"}, "tagCount": {"type": "integer"},
            "changeableAttributes": {"type": "object"}}},
        "DeletedRepository": {"type": "object", "properties": {
            "manifestsDeleted": {"type": "array", "items": {"type": "string"}},
            "tagsDeleted": {"type": "array", "items": {"type": "string"}}}},
        "TagAttributes": {"type": "object", "required": ["registry", "imageName", "tag"], "properties": {
            "registry": {"type": "string"}, "imageName": {"type": "string"}, "tag": {"type": "object"}}},
        "TagList": {"type": "object", "required": ["registry", "imageName", "tags"], "properties": {
            "registry": {"type": "string"}, "imageName": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "object"}}}},
        "AcrManifests": {"type": "object", "required": ["registry", "imageName", "manifests"], "properties": {
            "registry": {"type": "string"}, "imageName": {"type": "string"},
            "manifests": {"type": "array", "items": {"type": "object"}}}},
        "ManifestAttributes": {"type": "object", "required": ["registry", "imageName", "manifest"], "properties": {
            "registry": {"type": "string"}, "imageName": {"type": "string"}, "manifest": {"type": "object"}}}
    })
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = v2_paths();
    paths.extend(acr_paths());
    paths.extend(oauth_paths());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "acr-import login servers",
            "description": "The registry listener (`--registry-listen`, `--registry-listen-tls`) of acr-import: every emulated registry's login server `<registry>.<suffix>` (chosen by the `Host` header), with the `/v2` distribution API, ACR's `/acr/v1` data plane (login servers only) and ACR's token service. On a host that is not a login server (e.g. `127.0.0.1:5000`), `/v2` names are `<registry>/<repository>` and `/acr/v1` answers 404. Without `--registry-auth` the plain listener lets anyone read and write; the TLS listener always challenges (401 with `WWW-Authenticate: Bearer realm=\"https://<host>/oauth2/token\",service=\"<host>\"`). Any other path answers 404 and a method a route does not take 405, both with the error body. Errors: `{\"errors\":[{\"code\",\"message\",\"detail\"}]}`.",
            "license": {"name": "MIT"},
            "version": env!("CARGO_PKG_VERSION")
        },
        "paths": paths,
        "components": {"schemas": schemas()}
    })
}

/// The document as pretty JSON with a trailing newline (the form checked in under `openapi/`).
pub fn document_json() -> String {
    let mut s = serde_json::to_string_pretty(&document())
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    /// The checked-in document must match the code. Run with `UPDATE_OPENAPI=1` to rewrite it
    /// (or `acr-import openapi --registry > openapi/registry.json`).
    #[test]
    fn registry_openapi_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/registry.json");
        let generated = super::document_json();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).expect("write openapi document");
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "openapi/registry.json is out of date: run `./target/debug/acr-import openapi --registry > openapi/registry.json`"
        );
    }

    /// The repository pattern says what the handlers check.
    #[test]
    fn repository_pattern_agrees_with_the_handlers() {
        let re = regex::Regex::new(super::REPOSITORY_PATTERN).expect("pattern");
        for name in ["app", "team/app", "a.b_c-d/e0", "x", "a__b", "a-.b"] {
            assert!(re.is_match(name), "{name}");
            assert!(crate::request::valid_repository(name), "{name}");
        }
        for name in ["App", "-a", "a-", "a//b", "/a", "a/", "a b", "", "a/.b"] {
            assert!(!re.is_match(name), "{name}");
            assert!(!crate::request::valid_repository(name), "{name}");
        }
    }
}
