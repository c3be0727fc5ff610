//! `WWW-Authenticate` challenges and registry token responses.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A parsed challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
        error: Option<String>,
    },
}

/// Parses the first usable challenge of a `WWW-Authenticate` value.
///
/// Grammar: `scheme [param=value (, param=value)*]` where value is a token or a quoted string
/// with `\`-escapes. Unknown schemes yield `None`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.find(char::is_whitespace) {
        Some(i) => (&header[..i], header[i..].trim_start()),
        None => (header, ""),
    };
    let params = parse_params(rest)?;
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
            error: params.get("error").cloned(),
        })
    } else {
        None
    }
}

fn parse_params(s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let k0 = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = s[k0..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return None;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut closed = false;
            let mut chars = s[i..].char_indices();
            while let Some((off, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        i += off + 1;
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return None;
            }
        } else {
            let v0 = i;
            while i < b.len() && b[i] != b',' && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            value.push_str(&s[v0..i]);
        }
        if key.is_empty() || key.len() > 64 || value.len() > 8192 {
            return None;
        }
        out.insert(key, value);
    }
    Some(out)
}

/// A token endpoint's answer.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    pub fn token(&self) -> Option<&str> {
        self.token
            .as_deref()
            .filter(|t| !t.is_empty())
            .or(self.access_token.as_deref().filter(|t| !t.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
                error: None,
            })
        );
        let c = parse_challenge(
            r#"bearer realm="http://x/t", error="insufficient_scope", scope="a:b:c,d""#,
        );
        assert!(
            matches!(c, Some(Challenge::Bearer { ref scope, ref error, .. })
            if scope.as_deref() == Some("a:b:c,d") && error.as_deref() == Some("insufficient_scope"))
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Basic"), Some(Challenge::Basic));
        let c = parse_challenge(r#"Bearer realm="a\"b""#);
        assert!(matches!(c, Some(Challenge::Bearer { ref realm, .. }) if realm == "a\"b"));
    }

    #[test]
    fn malformed() {
        for bad in [
            "Bearer",
            r#"Bearer realm="unterminated"#,
            "Bearer realm",
            "Negotiate abc",
            r#"Bearer service="x""#,
            "",
        ] {
            assert!(
                !matches!(parse_challenge(bad), Some(Challenge::Bearer { .. })),
                "{bad}"
            );
        }
    }
}

/// Property tests of the challenge parser (the fuzz target `www_authenticate` in `fuzz/`
/// drives the same function with libFuzzer).
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// `value` as an RFC 7230 quoted-string.
    fn quote(value: &str) -> String {
        let mut q = String::from("\"");
        for c in value.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        q
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn never_panics(s in "\\PC{0,400}") {
            let _ = parse_challenge(&s);
        }

        #[test]
        fn never_panics_on_challenge_shaped_input(
            s in "(Bearer|Basic|bearer|Digest)?[ ,]{0,2}([a-z]{0,6}[ ]?=[ ]?(\"[^\"]{0,20}\"?|[a-z0-9:/.]{0,10})[ ,]{0,3}){0,5}"
        ) {
            let _ = parse_challenge(&s);
        }

        #[test]
        fn bearer_parameters_round_trip(
            realm in "[ -~]{1,60}",
            service in proptest::option::of("[ -~]{0,30}"),
            scope in proptest::option::of("repository:[a-z0-9/]{1,20}:(pull|push|pull,push)"),
            order in 0usize..6,
            sep in "(,|, |,  | ,)",
        ) {
            let mut params = vec![format!("realm={}", quote(&realm))];
            if let Some(s) = &service {
                params.push(format!("service={}", quote(s)));
            }
            if let Some(s) = &scope {
                params.push(format!("scope={}", quote(s)));
            }
            let n = params.len();
            params.rotate_left(order % n);
            let header = format!("Bearer {}", params.join(&sep));
            prop_assert_eq!(
                parse_challenge(&header),
                Some(Challenge::Bearer { realm, service, scope, error: None }),
                "header {}", header
            );
        }

        #[test]
        fn unknown_schemes_are_not_challenges(scheme in "[A-Za-z][A-Za-z0-9-]{0,12}", rest in "[ -~]{0,40}") {
            prop_assume!(!scheme.eq_ignore_ascii_case("basic") && !scheme.eq_ignore_ascii_case("bearer"));
            prop_assert_eq!(parse_challenge(&format!("{scheme} {rest}")), None);
        }
    }
}
