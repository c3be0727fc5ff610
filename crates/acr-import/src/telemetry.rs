//! The Prometheus exporter: installed once as the `metrics` facade's recorder (the library
//! crates record through `acr_core::metrics` and know nothing of it), rendered by `GET
//! /metrics` on the ARM listeners and, with `--metrics-listen`, on a listener of its own.

use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// How often the exporter's upkeep runs (it drains histogram samples recorded since the last
/// render, so memory stays flat between scrapes).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the recorder (histograms with explicit buckets, so they render as histograms),
/// describes every metric, sets the build info and starts the upkeep task (which ends with
/// the runtime). Once per process.
pub fn install() -> anyhow::Result<acr_api::metrics::MetricsRender> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in acr_core::metrics::HISTOGRAMS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
            .with_context(|| format!("buckets of {name}"))?;
    }
    let handle: PrometheusHandle = builder
        .install_recorder()
        .context("installing the metrics recorder")?;
    acr_core::metrics::describe();
    acr_core::metrics::build_info(env!("CARGO_PKG_VERSION"));
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(acr_api::metrics::MetricsRender::new(move || {
        handle.render()
    }))
}

/// Serves `/metrics` alone on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: acr_api::AppState,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, acr_api::metrics::listener_router(state))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .context("serving --metrics-listen")
}
