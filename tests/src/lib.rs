//! The end-to-end harness for acr-import.
//!
//! Everything a test needs runs as a real process or a real socket on 127.0.0.1: a fresh
//! PostgreSQL database per test ([`postgres`]), Debian's `docker-registry` in three
//! flavours ([`registry`], with a Docker token server of our own in [`token_server`]), a
//! bandwidth-limiting TCP proxy ([`proxy`]), an HTTP fault-injection proxy that counts and
//! breaks registry traffic ([`fault_proxy`]), deterministic test images ([`image`]) pushed
//! and verified through the distribution API ([`oci`]), the acr-import binary itself
//! ([`service`]), a small ARM client to drive it ([`arm`]) and a reader of its `/metrics`
//! ([`prometheus`]). [`env`] wires the usual set together.
//!
//! Invariants: nothing here talks to anything but 127.0.0.1 (the HTTP clients ignore proxy
//! variables); every spawned process and task dies when its owner is dropped; waiting is
//! always polling with a deadline, never a blind sleep.

pub mod arm;
pub mod env;
pub mod fault_proxy;
pub mod image;
pub mod oci;
pub mod postgres;
pub mod prometheus;
pub mod proxy;
pub mod registry;
pub mod service;
pub mod token_server;
pub mod util;

pub use arm::{ArmClient, ArmResponse, API_VERSION};
pub use env::TestEnv;
pub use fault_proxy::{Action, FaultProxy, Kind, Rule};
pub use image::{Blob, Format, Manifest, Platform, TestImage};
pub use oci::{Credentials, FetchedManifest, OciClient};
pub use postgres::{PgCluster, TestDatabase};
pub use proxy::ThrottleProxy;
pub use registry::TestRegistry;
pub use service::{ServiceConfig, TestService};
pub use token_server::{TokenServer, TokenServerConfig};
