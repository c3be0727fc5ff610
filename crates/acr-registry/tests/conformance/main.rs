//! Our conformance suite for the built-in registry: the four workflows of the distribution spec
//! (pull, push, content discovery, content management), mirroring the checks of
//! opencontainers/distribution-spec `conformance/` (especially those distribution 2.8 fails),
//! plus auth and the Host-based login server.
//!
//! One module per workflow, as in the spec's suite: [`pull`], [`push`], [`content_discovery`],
//! [`content_management`]; then [`auth`] and [`login_server`]. [`harness`] is what they share.

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod auth;
mod content_discovery;
mod content_management;
mod login_server;
mod pull;
mod push;
