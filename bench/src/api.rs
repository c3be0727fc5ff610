//! Scenarios (accept) and (status): the API under load — each POST's latency while the
//! workers copy, and status GETs per second — on PostgreSQL and on SQLite.

use super::*;
use crate::floor::FloorProbe;

impl Bench {
    /// A fresh service on its built-in registry (empty data dir), `--workers 4`, on SQLite or
    /// on a fresh PostgreSQL database (returned: it lives as long as the service).
    pub(super) async fn api_service(
        &mut self,
        store: Store,
    ) -> Result<(Svc, Option<TestDatabase>)> {
        let data_dir = self.builtin_dir.join("data");
        remove_dir(&data_dir).await?;
        let (config, db) = match store {
            Store::Sqlite => (
                ServiceConfig::sqlite(&data_dir, "unused").builtin_registry(false),
                None,
            ),
            Store::Postgres => {
                let db = TestDatabase::create().await;
                let config = ServiceConfig::new(db.url(), "unused")
                    .builtin_registry(false)
                    .flag("--data-dir", data_dir.display());
                (config, Some(db))
            }
        };
        Ok((Svc::start_with(config.workers(4)).await?, db))
    }

    /// One (accept) run: [`ACCEPT_RATE`] POSTs/s for [`ACCEPT_SECS`] s, open loop.
    pub(super) async fn run_accept(
        &mut self,
        store: Store,
        run: usize,
        images: usize,
    ) -> Result<AcceptRun> {
        let (svc, db) = self.api_service(store).await?;
        let mut targets = Vec::with_capacity(ACCEPT_REGISTRIES);
        for k in 0..ACCEPT_REGISTRIES {
            let sub = format!("6b1f0c1e-0be7-4c11-8a2d-0000acce{k:04}");
            let name = format!("AccReg{k:02}");
            svc.arm.create_registry(&sub, RG, &name).await;
            targets.push(svc.arm.import_url(&sub, RG, &name));
        }
        let n = (ACCEPT_RATE * ACCEPT_SECS) as usize;
        let jobs: Vec<(String, Vec<u8>)> = (0..n)
            .map(|i| {
                let img = i % images;
                let body = json!({
                    "source": {"registryUri": self.src.host(), "sourceImage": format!("{}:{TAG}", batch_repo(img))},
                    "targetTags": [format!("accept/batch-{img:02}:p{i}")],
                    "mode": "Force",
                });
                (
                    targets[i % targets.len()].clone(),
                    serde_json::to_vec(&body).expect("serialize body"),
                )
            })
            .collect();
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        let pid = svc.service.pid();
        let probe = FloorProbe::start(
            db.as_ref().map(TestDatabase::url),
            &self.builtin_dir.join("floor-probe.db"),
        )
        .await?;
        let cpu = ApiCpu::start(pid);
        let (posted, sending) = load::post_stream(&http, jobs, ACCEPT_RATE).await;
        let (service_cpu, client_cpu, rest_cpu) = cpu.stop();
        let floor = probe.stop().await?;
        let server_within = import_posts_within(&http, &svc.arm.url("/metrics")).await;
        let accepted = posted.iter().filter(|p| p.status == 202).count();
        if let Some(bad) = posted.iter().find(|p| p.status != 202) {
            log(format!(
                "(accept) {} POSTs not answered 202; the first: {} {}",
                n - accepted,
                bad.status,
                bad.error.as_deref().unwrap_or_default()
            ));
        }
        // How far the workers got: the status of every accepted operation, read right after.
        let urls: Vec<String> = posted.iter().filter_map(|p| p.status_url.clone()).collect();
        let finished = futures::stream::iter(urls)
            .map(|u| {
                let http = http.clone();
                async move {
                    let v: Value = http.get(&u).send().await.ok()?.json().await.ok()?;
                    Some(v["status"].as_str() == Some("Succeeded"))
                }
            })
            .buffer_unordered(8)
            .filter(|x| futures::future::ready(*x == Some(true)))
            .count()
            .await;
        let r = AcceptRun {
            store: store.label(),
            run,
            rate: ACCEPT_RATE,
            sent: n,
            accepted,
            send_secs: sending.as_secs_f64(),
            latencies_ms: posted
                .iter()
                .map(|p| p.latency.as_secs_f64() * 1000.0)
                .collect(),
            max_lag_ms: posted
                .iter()
                .map(|p| p.lag.as_secs_f64() * 1000.0)
                .fold(0.0, f64::max),
            finished,
            service_cpu,
            client_cpu,
            rest_cpu,
            peak_rss: svc.service.peak_rss_bytes(),
            server_within,
            floor,
        };
        drop(svc);
        drop(db);
        remove_dir(&self.builtin_dir.join("data")).await?;
        Ok(r)
    }

    pub(super) async fn scenario_accept(&mut self, images: usize) -> Result<Vec<AcceptRun>> {
        self.warm = None;
        let mut out = Vec::new();
        for run in 0..self.runs {
            for store in Store::in_order_of_run(run) {
                let r = self.run_accept(store, run + 1, images).await?;
                let l = &r.latencies_ms;
                log(format!(
                    "(accept) run {}/{} {}: {}/{} POSTs 202, sent in {:.1} s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} Succeeded by the end; the store's bare commit p99 {:.2} ms, round trip p99 {:.2} ms",
                    run + 1,
                    self.runs,
                    r.store,
                    r.accepted,
                    r.sent,
                    r.send_secs,
                    measure::percentile(l, 50.0),
                    measure::percentile(l, 99.0),
                    measure::max(l),
                    r.finished,
                    measure::percentile(&r.floor.commit_ms, 99.0),
                    measure::percentile(&r.floor.trip_ms, 99.0),
                ));
                out.push(r);
            }
        }
        Ok(out)
    }

    /// One (status) run: 4 finished imports, then [`STATUS_CONNS`] connections GET their
    /// status URLs for [`STATUS_SECS`] s.
    pub(super) async fn run_status(&mut self, store: Store, run: usize) -> Result<StatusRun> {
        let (svc, db) = self.api_service(store).await?;
        let mut paths = Vec::new();
        let mut authority = String::new();
        for i in 0..4 {
            let body = import_body(&self.src.host(), &batch_repo(i), false);
            let resp = svc.arm.import(SUB, RG, REG, &body).await;
            if resp.status.as_u16() != 202 {
                bail!("(status) import not accepted: {resp}");
            }
            let url = resp.async_operation();
            svc.wait_succeeded(&url, Instant::now()).await?;
            let u = url::Url::parse(&url).context("status URL")?;
            authority = format!(
                "{}:{}",
                u.host_str().unwrap_or("127.0.0.1"),
                u.port_or_known_default().unwrap_or(80)
            );
            paths.push(match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            });
        }
        let addr: std::net::SocketAddr = authority
            .parse()
            .with_context(|| format!("status URL authority {authority}"))?;
        let pid = svc.service.pid();
        let cpu = ApiCpu::start(pid);
        let l = load::get_load(
            addr,
            &authority,
            &paths,
            STATUS_CONNS,
            Duration::from_secs(STATUS_SECS),
        )
        .await?;
        let (service_cpu, client_cpu, rest_cpu) = cpu.stop();
        let r = StatusRun {
            store: store.label(),
            run,
            conns: STATUS_CONNS,
            secs: l.elapsed.as_secs_f64(),
            ok: l.ok,
            errors: l.errors,
            latencies_ms: l
                .latencies_us
                .iter()
                .map(|us| *us as f64 / 1000.0)
                .collect(),
            service_cpu,
            client_cpu,
            rest_cpu,
        };
        drop(svc);
        drop(db);
        remove_dir(&self.builtin_dir.join("data")).await?;
        Ok(r)
    }

    pub(super) async fn scenario_status(&mut self) -> Result<Vec<StatusRun>> {
        self.warm = None;
        let mut out = Vec::new();
        for run in 0..self.runs {
            for store in Store::in_order_of_run(run) {
                let r = self.run_status(store, run + 1).await?;
                log(format!(
                    "(status) run {}/{} {}: {:.0} req/s ({} in {:.2} s, {} errors)",
                    run + 1,
                    self.runs,
                    r.store,
                    r.rps(),
                    r.ok,
                    r.secs,
                    r.errors
                ));
                out.push(r);
            }
        }
        Ok(out)
    }
}

/// The share of importImage POSTs the service's request-duration histogram counted at ≤ 5 ms
/// and ≤ 10 ms (`None` when the scrape fails or holds none).
async fn import_posts_within(http: &reqwest::Client, metrics_url: &str) -> Option<(f64, f64)> {
    let text = http.get(metrics_url).send().await.ok()?.text().await.ok()?;
    let scrape = acr_import_tests::prometheus::Scrape::parse(&text);
    let name = "acr_import_http_request_duration_seconds_bucket";
    let imports = |le: &str| -> f64 {
        scrape
            .matching(name, &[("method", "POST"), ("le", le)])
            .filter(|s| {
                s.labels
                    .get("route")
                    .is_some_and(|r| r.ends_with("/importImage"))
            })
            .map(|s| s.value)
            .sum()
    };
    let all = imports("+Inf");
    (all > 0.0).then(|| (imports("0.005") / all, imports("0.01") / all))
}
