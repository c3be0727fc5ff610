//! End-to-end tests for acr-import: one module per feature.
//!
//! Every test builds its own world (database, registries, service) through the
//! `acr_import_tests` harness, so tests run in parallel. Service tests need
//! `target/debug/acr-import` (`cargo build -p acr-import`) or `ACR_IMPORT_BIN`; the
//! `harness` module needs only docker-registry, htpasswd and PostgreSQL.

mod common;

mod api_fuzz;
mod arm_surface;
mod auth_refresh;
mod builtin_registry;
mod chaos;
mod cli;
mod clients;
mod concurrency;
mod copy_graph;
mod crash;
mod fault_proxy;
mod full_disk;
mod gc;
mod harness;
mod health;
mod import_basic;
mod import_rules;
mod large;
mod limits;
mod login_servers;
mod lro;
mod malformed;
mod metrics;
mod missing_source;
mod modes;
mod portal;
mod portal_browser;
mod rbac;
mod registries;
mod registry_deletion;
mod replicas;
mod resilience;
mod resource_id;
mod retention;
mod schemathesis;
mod security;
mod shutdown;
mod source_auth;
mod sqlite_store;
mod transfer;
