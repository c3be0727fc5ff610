//! Domain of acr-import, with no I/O.
//!
//! This crate owns the vocabulary every other crate speaks: OCI image references and
//! repository/tag/digest grammar ([`reference`]), ARM resource ids and the api-versions we accept
//! ([`arm`]), the ARM wire types with their OpenAPI schemas ([`wire`]), and the operation states
//! and failure codes of an import ([`operation`]), and every metric the service exports, with
//! its bounded labels ([`metrics`]).
//!
//! Invariants: parsers here are strict (anything they accept is safe to put in a URL path or a
//! log line); nothing here knows about HTTP status handling beyond the numeric status an import
//! failure should be reported with; nothing here performs I/O.

pub mod admin;
pub mod arm;
pub mod import;
pub mod metrics;
pub mod netpolicy;
pub mod operation;
pub mod patterns;
pub mod policies;
pub mod rbac;
pub mod reference;
pub mod wire;

/// An error and its causes, `: `-joined: the one chain walker. Every error type of the
/// workspace follows one rule (omicron's): its `Display` never repeats its `#[source]`, so the
/// chain reads each cause once.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A rejected input: which field, and a message a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    /// The offending field (`source.sourceImage`, `targetTags[1]`, `registryName`, …).
    pub target: String,
    pub message: String,
}

impl Invalid {
    pub fn new(target: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            message: message.into(),
        }
    }
}
