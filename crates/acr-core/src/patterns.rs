//! The grammar of the `importImage` body as JSON Schema patterns, for the OpenAPI document: the
//! same rules [`crate::import::ImportSpec::from_params`] checks by hand (repository names,
//! tags and digests of [`crate::reference`], registry addresses, ARM resource ids). The tests
//! below hold the two together on examples of each side of every rule.
//!
//! What the patterns leave to the service, and the document says in words: a repository name
//! is at most 255 characters (also after Docker Hub's `library/` is added), and a source
//! address that is an IP literal of a refused range (link-local, `0.0.0.0/8`, multicast,
//! broadcast; `--deny-private-networks`) is refused once the target registry is found.

/// One component of a repository name.
const COMPONENT: &str = "[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*";
/// A tag.
const TAG: &str = "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}";
/// A digest (sha256 or sha512, lowercase hex).
const DIGEST: &str = "(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})";
/// A DNS label.
const LABEL: &str = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
/// A port, 1 to 65535.
const PORT: &str =
    "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
/// An IPv6 address in its textual forms (without an embedded IPv4 address).
const IPV6: &str = "(?:(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|(?:[0-9a-fA-F]{1,4}:){1,7}:|(?:[0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|(?:[0-9a-fA-F]{1,4}:){1,5}(?::[0-9a-fA-F]{1,4}){1,2}|(?:[0-9a-fA-F]{1,4}:){1,4}(?::[0-9a-fA-F]{1,4}){1,3}|(?:[0-9a-fA-F]{1,4}:){1,3}(?::[0-9a-fA-F]{1,4}){1,4}|(?:[0-9a-fA-F]{1,4}:){1,2}(?::[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(?::[0-9a-fA-F]{1,4}){1,6}|:(?::[0-9a-fA-F]{1,4}){1,7}|::)";

fn repository() -> String {
    format!("{COMPONENT}(?:/{COMPONENT})*")
}

/// `word` matched in any case, as ARM matches the fixed segments of an id.
fn any_case(word: &str) -> String {
    word.chars()
        .map(|c| match c {
            c if c.is_ascii_alphabetic() => {
                format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
            }
            '.' => "\\.".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// `source.sourceImage`: `repo`, `repo:tag`, `repo@digest` or `repo:tag@digest`.
pub fn source_image() -> String {
    format!("^{}(?::{TAG})?(?:@{DIGEST})?$", repository())
}

/// A `targetTags` entry: `repo` or `repo:tag`.
pub fn target_tag() -> String {
    format!("^{}(?::{TAG})?$", repository())
}

/// An `untaggedTargetRepositories` entry: a repository name.
pub fn repository_name() -> String {
    format!("^{}$", repository())
}

/// `source.registryUri`: `[http://|https://]host[:port][/]`, the host a DNS name or an
/// IPv6 literal in brackets.
pub fn registry_uri() -> String {
    format!(
        "^(?:{}://|{}://)?(?:{LABEL}(?:\\.{LABEL})*|\\[{IPV6}\\])(?::{PORT})?/?$",
        any_case("https"),
        any_case("http")
    )
}

/// `source.resourceId`: the ARM id of a registry (fixed segments in any case).
pub fn resource_id() -> String {
    let uuid = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
    format!(
        "^/{}/{uuid}/{}/[-\\w\\._\\(\\)]{{0,89}}[-\\w_\\(\\)]/{}/{}/{}/[a-zA-Z0-9]{{5,50}}/*$",
        any_case("subscriptions"),
        any_case("resourceGroups"),
        any_case("providers"),
        any_case(crate::arm::PROVIDER),
        any_case("registries"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arm::RegistryId;
    use crate::import::RegistryAddress;
    use crate::reference::{ImageRef, Repository, Tag, TargetTag};
    use regex::Regex;

    fn re(p: &str) -> Regex {
        Regex::new(p).expect("pattern compiles")
    }

    #[test]
    fn source_images() {
        let r = re(&source_image());
        let d = format!("sha256:{}", "a".repeat(64));
        for s in [
            "app".to_owned(),
            "team/app:v1".to_owned(),
            format!("a-b__c.d/e@{d}"),
            format!("x:t@{d}"),
            "a---b".to_owned(),
        ] {
            assert!(r.is_match(&s), "{s}");
            assert!(ImageRef::parse(&s).is_ok(), "{s}");
        }
        for s in [
            "",
            "App",
            "a:",
            "a:-t",
            "a@sha256:x",
            "a/",
            "/a",
            "a//b",
            "a..b",
            "a:t:u",
            "a b",
        ] {
            assert!(!r.is_match(s), "{s}");
            assert!(ImageRef::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn target_tags_and_repositories() {
        let t = re(&target_tag());
        let latest = Tag::latest();
        for s in ["app", "team/app:v1", "a:_x"] {
            assert!(t.is_match(s) && TargetTag::parse(s, &latest).is_ok(), "{s}");
        }
        let d = format!("a@sha256:{}", "0".repeat(64));
        for s in ["", "a:", d.as_str(), "A"] {
            assert!(
                !t.is_match(s) && TargetTag::parse(s, &latest).is_err(),
                "{s}"
            );
        }
        let n = re(&repository_name());
        for s in ["app", "a/b_c"] {
            assert!(n.is_match(s) && Repository::parse(s).is_ok(), "{s}");
        }
        for s in ["", "a:b", "a/", "a_"] {
            assert!(!n.is_match(s) && Repository::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn registry_uris() {
        let r = re(&registry_uri());
        for s in [
            "mcr.microsoft.com",
            "127.0.0.1:5000",
            "HTTPS://Registry.example.com:443/",
            "http://localhost",
            "[::1]:5000",
            "[fd00::1]",
            "a-b.c",
        ] {
            assert!(r.is_match(s), "{s}");
            assert!(RegistryAddress::parse(s).is_ok(), "{s}");
        }
        for s in [
            "", "a/b", "a:0", "a:65536", "-a", "a-", "a..b", "[::g]", "u@h", "ftp://h", "h:",
        ] {
            assert!(!r.is_match(s), "{s}");
            assert!(RegistryAddress::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn resource_ids() {
        let r = re(&resource_id());
        let sub = "00000000-0000-0000-0000-000000000001";
        for s in [
            format!("/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/myreg"),
            format!("/SUBSCRIPTIONS/{sub}/resourcegroups/r.g(1)/PROVIDERS/microsoft.containerregistry/Registries/MyReg01/"),
        ] {
            assert!(r.is_match(&s), "{s}");
            assert!(RegistryId::parse(&s).is_ok(), "{s}");
        }
        for s in [
            format!("/subscriptions/{sub}/resourceGroups/rg./providers/Microsoft.ContainerRegistry/registries/myreg"),
            "/subscriptions/x/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/myreg".to_owned(),
            format!("/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/abc"),
            format!("subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/myreg"),
        ] {
            assert!(!r.is_match(&s), "{s}");
            assert!(RegistryId::parse(&s).is_err(), "{s}");
        }
    }
}
