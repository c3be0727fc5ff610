//! OCI distribution client and graph copy engine.
//!
//! [`client::RegistryClient`] speaks the distribution API to one registry: auth (anonymous, Basic,
//! Bearer token dance with per-scope token cache), manifests read whole under a size cap, blobs
//! streamed. [`copy`] copies an image graph bottom-up (blobs → child manifests by digest → index
//! → tags) verifying every digest while the bytes stream through.
//!
//! Invariants: manifest bytes are pushed exactly as received, with their media type; a blob is
//! never held whole in memory; a digest is always computed, never trusted from headers; a blob
//! whose bytes do not match its descriptor is never committed at the target. This crate knows
//! nothing of ARM or the database.

pub mod client;
pub mod copy;
pub mod error;
pub mod media;
pub mod netguard;

/// `WWW-Authenticate` challenges and token responses (kept at this path for the fuzz targets).
pub use client::transport::challenge as auth;

pub use client::{ClientConfig, Credentials, HostLimits, RegistryClient};
pub use copy::{
    BlobBody, BlobSink, CopiedManifest, CopyError, CopyGate, CopyReport, CopyRequest, CopyTarget,
    Progress,
};
pub use error::OciError;
pub use netguard::{AddressRefused, NetworkPolicy};
