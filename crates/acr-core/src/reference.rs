//! OCI image reference grammar (distribution-spec and `distribution/reference`).
//!
//! Repository names: path components of `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`, at most
//! 255 characters in all. Tags: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`. Digests: `sha256:` + 64
//! lowercase hex or `sha512:` + 128 lowercase hex.

use std::fmt;

use crate::Invalid;

/// The grammar and the digest types live in `acr-grammar` (shared with the built-in registry
/// and the copy engine); this module adds the reference types and user-facing messages.
pub use acr_grammar::{truncate, Algorithm, Digest, DigestError, Hasher, MAX_REPOSITORY_LEN};

/// A validated repository name such as `library/nginx`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository(String);

impl Repository {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the repository name is empty".into());
        }
        if s.len() > MAX_REPOSITORY_LEN {
            return Err(format!(
                "the repository name is {} characters long; at most {MAX_REPOSITORY_LEN} are allowed",
                s.len()
            ));
        }
        for component in s.split('/') {
            if !acr_grammar::valid_component(component) {
                return Err(format!(
                    "'{}' is not a valid repository name: each '/'-separated component must be lowercase letters and digits, optionally separated by '.', '_', '__' or '-'",
                    truncate(s)
                ));
            }
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This repository under a prefix (`myregistry` + `app` → `myregistry/app`).
    pub fn prefixed(&self, prefix: &str) -> Result<Self, String> {
        Self::parse(&format!("{prefix}/{}", self.0))
    }

    /// The repository with its first component removed, if there is more than one.
    pub fn first_component(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, String> {
        if acr_grammar::valid_tag(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "'{}' is not a valid tag: a tag is 1 to 128 characters of letters, digits, '_', '.' and '-', and does not start with '.' or '-'",
                truncate(s)
            ))
        }
    }

    pub fn latest() -> Self {
        Self("latest".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a reference points at inside a repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// `repository[:tag][@digest]` without a registry host (an ARM `sourceImage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: Repository,
    /// The tag that was written, if any (kept even when a digest is also given).
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// Parses `repo`, `repo:tag`, `repo@digest` or `repo:tag@digest`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the image reference is empty".into());
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d)?)),
            None => (s, None),
        };
        // A ':' after the last '/' separates the tag.
        let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name_tag[last_slash..].find(':') {
            Some(i) => {
                let split = last_slash + i;
                (
                    &name_tag[..split],
                    Some(Tag::parse(&name_tag[split + 1..])?),
                )
            }
            None => (name_tag, None),
        };
        Ok(Self {
            repository: Repository::parse(name)?,
            tag,
            digest,
        })
    }

    /// The reference to resolve at the source: the digest when given, else the tag, else `latest`.
    pub fn reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(d), _) => Reference::Digest(d.clone()),
            (None, Some(t)) => Reference::Tag(t.clone()),
            (None, None) => Reference::Tag(Tag::latest()),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.repository.as_str())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A target tag, `repo:tag` (tag defaults to the one given).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetTag {
    pub repository: Repository,
    pub tag: Tag,
}

impl TargetTag {
    /// Parses a `targetTags` entry; `default_tag` is used when the entry has no tag.
    pub fn parse(s: &str, default_tag: &Tag) -> Result<Self, String> {
        if s.contains('@') {
            return Err(format!(
                "'{}' is not a valid target tag: a target tag is 'repository[:tag]' and cannot contain a digest",
                truncate(s)
            ));
        }
        let r = ImageRef::parse(s)?;
        Ok(Self {
            repository: r.repository,
            tag: r.tag.unwrap_or_else(|| default_tag.clone()),
        })
    }
}

impl fmt::Display for TargetTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

impl From<(String, String)> for Invalid {
    fn from((target, message): (String, String)) -> Self {
        Invalid { target, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn repositories() {
        for ok in ["a", "library/nginx", "a.b/c_d/e__f/g-h---i", "0/1"] {
            assert!(Repository::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a//b", "/a", "a/", "a..b", "a/../b", "..", "a_", "-a", "a b", "ä", "a:b",
            "a___b",
        ] {
            assert!(Repository::parse(bad).is_err(), "{bad}");
        }
        assert!(Repository::parse(&"a".repeat(256)).is_err());
        assert!(Repository::parse(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(Tag::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"t".repeat(129), "é"] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests() {
        assert_eq!(Digest::parse(D).map(|d| d.to_string()).as_deref(), Ok(D));
        for bad in [
            "sha256:abc",
            "md5:0123456789abcdef0123456789abcdef",
            "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "sha256:../../../../etc/passwd",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(128))).is_ok());
    }

    #[test]
    fn image_refs() {
        let r = ImageRef::parse("library/nginx").expect("parse");
        assert_eq!(r.reference(), Reference::Tag(Tag::latest()));
        let r = ImageRef::parse("a/b:v1").expect("parse");
        assert_eq!(r.repository.as_str(), "a/b");
        assert_eq!(r.tag.as_ref().map(Tag::as_str), Some("v1"));
        let r = ImageRef::parse(&format!("a/b@{D}")).expect("parse");
        assert_eq!(r.reference().to_string(), D);
        let r = ImageRef::parse(&format!("a:v1@{D}")).expect("parse");
        assert_eq!(r.reference().to_string(), D);
        assert_eq!(r.to_string(), format!("a:v1@{D}"));
        for bad in ["", "a:", "a@", "a:b:c", "UPPER:v1", "a@sha256:zz", "a b:c"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn target_tags() {
        let t = TargetTag::parse("x/y", &Tag::latest()).expect("parse");
        assert_eq!(t.to_string(), "x/y:latest");
        let t = TargetTag::parse("x/y:v2", &Tag::latest()).expect("parse");
        assert_eq!(t.to_string(), "x/y:v2");
        assert!(TargetTag::parse(&format!("x@{D}"), &Tag::latest()).is_err());
    }
}

/// Property tests: the parsers never panic on arbitrary input, accept what the grammar allows,
/// and what they accept prints back to something they parse to the same value. (The fuzz
/// targets in `fuzz/` drive the same entry points with libFuzzer.)
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use regex::Regex;
    use std::sync::LazyLock;

    // The distribution spec's regular expressions: the hand-written grammar must agree.
    static COMPONENT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$").expect("static regex")
    });
    static TAG: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$").expect("static regex"));

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn image_ref_never_panics_and_round_trips(s in "\\PC{0,300}") {
            if let Ok(r) = ImageRef::parse(&s) {
                let again = ImageRef::parse(&r.to_string());
                prop_assert_eq!(again, Ok(r));
            }
        }

        #[test]
        fn accepted_repositories_obey_the_grammar(
            s in "[a-zA-Z0-9._/:@-]{0,300}(@sha256:[0-9a-f]{64})?"
        ) {
            if let Ok(r) = ImageRef::parse(&s) {
                prop_assert!(r.repository.as_str().len() <= MAX_REPOSITORY_LEN);
                for c in r.repository.as_str().split('/') {
                    prop_assert!(COMPONENT.is_match(c), "component {:?} of {:?}", c, s);
                }
                if let Some(t) = &r.tag {
                    prop_assert!(TAG.is_match(t.as_str()));
                }
            }
        }

        #[test]
        fn grammatical_references_parse(
            repo in "[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}(/[a-z0-9]{1,8}){0,3}",
            tag in "[A-Za-z0-9_][A-Za-z0-9._-]{0,40}",
            hex in "[0-9a-f]{64}",
        ) {
            let r = ImageRef::parse(&format!("{repo}:{tag}@sha256:{hex}"))
                .map_err(TestCaseError::fail)?;
            prop_assert_eq!(r.repository.as_str(), repo.as_str());
            prop_assert_eq!(r.tag.as_ref().map(Tag::as_str), Some(tag.as_str()));
            prop_assert_eq!(r.digest.map(|d| d.to_string()), Some(format!("sha256:{hex}")));
        }

        #[test]
        fn digests_and_target_tags_never_panic(s in "\\PC{0,200}") {
            if let Ok(d) = Digest::parse(&s) {
                prop_assert_eq!(Digest::parse(&d.to_string()), Ok(d));
            }
            let _ = TargetTag::parse(&s, &Tag::latest());
            let _ = Repository::parse(&s);
            let _ = Tag::parse(&s);
        }
    }
}
