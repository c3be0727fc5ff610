//! Operation states and the failures an import can end with.

use std::fmt;

/// Where an operation is in its life. Stored as text; only ever moves forward
/// (`Queued` ⇄ `Running` while attempts happen, then one terminal state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl OperationState {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Queued => "Queued",
            OperationState::Running => "Running",
            OperationState::Succeeded => "Succeeded",
            OperationState::Failed => "Failed",
            OperationState::Canceled => "Canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Queued" => OperationState::Queued,
            "Running" => OperationState::Running,
            "Succeeded" => OperationState::Succeeded,
            "Failed" => OperationState::Failed,
            "Canceled" => OperationState::Canceled,
            _ => return None,
        })
    }

    /// The ARM status string (`InProgress` while queued or running).
    pub fn arm_status(self) -> &'static str {
        match self {
            OperationState::Queued | OperationState::Running => "InProgress",
            s => s.as_str(),
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OperationState::Succeeded | OperationState::Failed | OperationState::Canceled
        )
    }
}

/// Why an import failed: an ARM error code, a message in the user's terms, and the HTTP status
/// the Location URL answers with (what a synchronous call would have returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportFailure {
    pub kind: FailureKind,
    pub message: String,
}

/// The classes of import failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The request cannot be carried out as given (bad reference, unsupported content, limits).
    InvalidParameters,
    /// A target tag exists and the mode is `NoForce`.
    TagConflict,
    /// The source registry does not have the image.
    SourceImageNotFound,
    /// The source registry refused our credentials (or their absence).
    SourceUnauthorized,
    /// The source registry failed, could not be reached, or sent corrupt content.
    SourceRegistryError,
    /// The backend that stores the emulated registries failed.
    TargetRegistryError,
    /// The operation ran past its deadline.
    TimedOut,
    /// The emulator itself failed (gave up after too many attempts, storage errors).
    Internal,
}

impl FailureKind {
    /// The ARM error code.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::InvalidParameters => "InvalidParameters",
            FailureKind::TagConflict => "Conflict",
            FailureKind::SourceImageNotFound => "SourceImageNotFound",
            FailureKind::SourceUnauthorized => "SourceRegistryUnauthorized",
            FailureKind::SourceRegistryError => "SourceRegistryError",
            FailureKind::TargetRegistryError => "TargetRegistryError",
            FailureKind::TimedOut => "ImportTimedOut",
            FailureKind::Internal => "InternalServerError",
        }
    }

    /// The status of the Location URL for a failed operation.
    pub fn http_status(self) -> u16 {
        match self {
            FailureKind::InvalidParameters
            | FailureKind::SourceUnauthorized
            | FailureKind::SourceRegistryError => 400,
            FailureKind::TagConflict => 409,
            FailureKind::SourceImageNotFound => 404,
            FailureKind::TargetRegistryError => 502,
            FailureKind::TimedOut => 504,
            FailureKind::Internal => 500,
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [
            FailureKind::InvalidParameters,
            FailureKind::TagConflict,
            FailureKind::SourceImageNotFound,
            FailureKind::SourceUnauthorized,
            FailureKind::SourceRegistryError,
            FailureKind::TargetRegistryError,
            FailureKind::TimedOut,
            FailureKind::Internal,
        ]
        .into_iter()
        .find(|k| k.code() == code)
    }
}

impl ImportFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ImportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}) {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for ImportFailure {}
