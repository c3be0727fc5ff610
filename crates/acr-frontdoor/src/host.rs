//! Which registry a request is for: the login server in its `Host` (`<name>.<suffix>`), or
//! the root view of a listener addressed by IP or `localhost`, where repository paths carry
//! the registry as their first component (`127.0.0.1:5000/myreg/app`).

use http::header;
use http::request::Parts;

/// How a request names repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// `Host: <registry>.<suffix>`: paths are relative to the registry.
    LoginServer { registry: String },
    /// Any other host: paths are `<registry>/<repo>`.
    Root,
}

/// The `Host` of a request (HTTP/2 `:authority` included), lowercased, validated; `None` when
/// it is missing or not a host name.
pub fn host_of(parts: &Parts) -> Option<String> {
    let h = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))?;
    let ok = !h.is_empty()
        && h.len() <= 255
        && h.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        });
    ok.then(|| h.to_ascii_lowercase())
}

/// The host without its port (`[::1]` kept whole).
pub fn bare(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// `<name>` when `host` (port dropped) is `<name>.<suffix>` with `<name>` a registry name.
pub fn login_server_name(host: &str, suffix: &str) -> Option<String> {
    let bare = bare(host);
    let label = bare.strip_suffix(suffix)?.strip_suffix('.')?;
    let valid = (5..=50).contains(&label.len()) && label.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then(|| label.to_ascii_lowercase())
}

pub fn view_of(host: &str, suffix: &str) -> View {
    match login_server_name(host, suffix) {
        Some(registry) => View::LoginServer { registry },
        None => View::Root,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_servers_and_the_root_view() {
        let s = "azurecr.io";
        assert_eq!(
            view_of("myregistry.azurecr.io", s),
            View::LoginServer {
                registry: "myregistry".into()
            }
        );
        assert_eq!(
            view_of("MyRegistry.azurecr.io:443", s),
            View::LoginServer {
                registry: "myregistry".into()
            }
        );
        assert_eq!(view_of("127.0.0.1:5000", s), View::Root);
        assert_eq!(view_of("[::1]:5000", s), View::Root);
        assert_eq!(view_of("localhost", s), View::Root);
        assert_eq!(view_of("a.b.azurecr.io", s), View::Root);
        assert_eq!(view_of("azurecr.io", s), View::Root);
        assert_eq!(view_of("evilazurecr.io", s), View::Root);
        assert_eq!(
            view_of("abc.azurecr.io", s),
            View::Root,
            "too short for a registry"
        );
        assert_eq!(bare("[::1]:5000"), "[::1]");
        assert_eq!(bare("h:1"), "h");
    }
}
