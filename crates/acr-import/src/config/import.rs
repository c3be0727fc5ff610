//! `acr-import import`: the client command's arguments (a client of a running service's ARM
//! API; the code is in `crate::client`). Flags follow `az acr import` where they overlap.

use std::path::PathBuf;

use clap::Args;
use secrecy::SecretString;

/// Shown under `acr-import import --help`.
pub const IMPORT_AFTER_HELP: &str = "\
Examples:
  acr-import import -n myregistry --source 127.0.0.1:5001/demo/app:v1 -t app:v1
  acr-import import -n myregistry --source docker.io/library/alpine:3.20 --force --no-wait
  ACR_IMPORT_SOURCE_PASSWORD=secret acr-import import -n myregistry \\
      --source registry.example.com:5000/team/app:v2 -u robot -t app:v2
  acr-import import -n myregistry --file images.txt

--file format: one import per line, `SOURCE [TARGET]`, separated by spaces or tabs. SOURCE is
REGISTRY/REPOSITORY[:TAG|@DIGEST] as for --source; TARGET is the target tag REPOSITORY[:TAG]
(default: the source repository and tag). Blank lines and lines starting with '#' are ignored.
Every line is checked before anything is sent; then all are submitted and followed at once,
with one progress bar each and a summary.

Unlike `az acr import`, --registry (-n, --name) names the TARGET registry here; a source
registry by ARM resource id is --source-registry.

Exit status: 0 when every import succeeded (or was accepted, with --no-wait); 1 when one
failed or the service could not be asked; 2 for bad arguments or a bad --file line.";

/// `acr-import import`.
#[derive(Debug, Args)]
#[command(after_long_help = IMPORT_AFTER_HELP)]
pub struct ImportArgs {
    /// The target registry (its name, as in ARM).
    #[arg(
        long = "registry",
        short = 'n',
        visible_alias = "name",
        value_name = "NAME"
    )]
    pub registry: String,
    /// The image to import: REGISTRY/REPOSITORY[:TAG|@DIGEST], e.g.
    /// 127.0.0.1:5001/demo/app:v1 or docker.io/library/alpine:3.20 (with --source-registry:
    /// REPOSITORY[:TAG|@DIGEST] only).
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub source: Option<String>,
    /// Target tag REPOSITORY[:TAG] (repeatable). Default: the source repository and tag.
    #[arg(
        short = 't',
        long = "image",
        value_name = "REPOSITORY[:TAG]",
        conflicts_with = "file"
    )]
    pub images: Vec<String>,
    /// Repository to copy the manifest into without a tag (repeatable).
    #[arg(
        long = "repository",
        value_name = "REPOSITORY",
        conflicts_with = "file"
    )]
    pub repositories: Vec<String>,
    /// Import many images: one `SOURCE [TARGET]` per line (TARGET: the target tag; blank
    /// lines and `#` comments ignored; more below).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The source is an emulated registry of the service, by ARM resource id
    /// (/subscriptions/…/registries/NAME) or by name (looked up in the subscription).
    #[arg(long, value_name = "ID|NAME")]
    pub source_registry: Option<String>,
    /// Overwrite existing target tags (mode Force); without it the import fails if one exists.
    #[arg(long)]
    pub force: bool,
    /// Username for the source registry.
    #[arg(short = 'u', long, env = "ACR_IMPORT_SOURCE_USERNAME")]
    pub username: Option<String>,
    /// Password (or, without --username, an access token) for the source registry; prefer the
    /// environment variable, which stays off the process list.
    #[arg(
        short = 'p',
        long,
        env = "ACR_IMPORT_SOURCE_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<SecretString>,
    /// Print the operation's status URL after the service accepted the import, and exit.
    #[arg(long)]
    pub no_wait: bool,
    /// The running service's ARM API.
    #[arg(
        long,
        env = "ACR_IMPORT_ENDPOINT",
        default_value = "http://127.0.0.1:8080"
    )]
    pub endpoint: String,
    /// Subscription of the target registry (default: the first the service lists, as
    /// `az login` picks).
    #[arg(long, value_name = "ID")]
    pub subscription: Option<String>,
    /// Resource group of the target registry (default: found by listing the subscription's
    /// registries).
    #[arg(short = 'g', long, value_name = "NAME")]
    pub resource_group: Option<String>,
    /// Bearer token for the ARM API (a service with --auth arm-rbac requires one, e.g. from
    /// `az account get-access-token` or the service's managed-identity endpoint).
    #[arg(
        long,
        env = "ACR_IMPORT_TOKEN",
        hide_env_values = true,
        conflicts_with = "identity"
    )]
    pub token: Option<SecretString>,
    /// Get the bearer token from the service's managed-identity endpoint, as
    /// `az login --identity` does (its system identity, or --object-id).
    #[arg(long)]
    pub identity: bool,
    /// With --identity: the principal (oid) to get the token for.
    #[arg(long, value_name = "GUID", requires = "identity")]
    pub object_id: Option<String>,
    /// PEM file of a CA to trust for an https --endpoint (e.g. the service's --tls-ca-out).
    #[arg(long, env = "ACR_IMPORT_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
}
