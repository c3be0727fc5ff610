//! Scenario (batch): 50 small 3-platform images, POSTed one after another then awaited,
//! against the peers copying 4 at a time.

use super::*;

impl Bench {
    /// (batch) acr-import: 50 POSTs one after another (as `az acr import --no-wait` in a
    /// loop), then every operation awaited; timed from the first POST to the last Succeeded.
    pub(super) async fn run_acr_batch(&mut self, n: usize) -> Result<Sample> {
        self.warm_service().await?;
        let svc = self.warm.as_ref().ok_or_else(|| anyhow!("no service"))?;
        let win = CpuWindow::open(self.src.pid(), self.tgt.pid(), Some(svc.service.pid()));
        let t0 = Instant::now();
        let mut urls = Vec::with_capacity(n);
        for i in 0..n {
            let body = import_body(&self.src.host(), &batch_repo(i), false);
            let resp = svc.arm.import(SUB, RG, REG, &body).await;
            match resp.status.as_u16() {
                202 => urls.push(resp.async_operation()),
                200 => {}
                _ => bail!("batch import {i} not accepted: {resp}"),
            }
        }
        for url in &urls {
            svc.wait_succeeded(url, t0).await?;
        }
        let wall = t0.elapsed();
        let cpu = win.close(None);
        Ok(Sample {
            wall,
            cpu,
            peak_rss: Some(svc.service.peak_rss_bytes()),
        })
    }

    /// (batch) a peer: one process per image, [`BATCH_PARALLEL`] at a time.
    pub(super) async fn run_peer_batch(&self, peer: Peer, n: usize) -> Result<Sample> {
        clear_skopeo_cache();
        let win = CpuWindow::open(self.src.pid(), self.tgt.pid(), None);
        let t0 = Instant::now();
        let this = self;
        let results: Vec<Result<measure::Timed>> = futures::stream::iter(0..n)
            .map(|i| async move {
                let repo = batch_repo(i);
                let src = format!("{}/{repo}:{TAG}", this.src.host());
                let dst = format!("{}/{}:{TAG}", this.tgt.host(), backend_repo(&repo));
                this.peer_copy(peer, &src, &dst, true).await
            })
            .buffer_unordered(BATCH_PARALLEL)
            .collect()
            .await;
        let wall = t0.elapsed();
        let (mut cpu_secs, mut rss) = (0.0, 0);
        for r in results {
            let t = r?;
            cpu_secs += t.cpu_secs;
            rss = rss.max(t.max_rss);
        }
        let cpu = win.close(Some(cpu_secs));
        Ok(Sample {
            wall,
            cpu,
            peak_rss: Some(rss),
        })
    }

    pub(super) async fn scenario_batch(&mut self, images: &[BenchImage]) -> Result<Vec<Series>> {
        let bytes = images.iter().map(BenchImage::total_bytes).sum();
        let mut tools = vec![Tool::AcrImport];
        tools.extend(self.peers().iter().map(|p| p.tool()));
        let mut series: Vec<Series> = tools
            .iter()
            .map(|t| Series::new(Scenario::Batch, *t, bytes))
            .collect();
        self.warm_service().await?;
        for run in 0..self.runs {
            for k in 0..tools.len() {
                let i = (k + run) % tools.len();
                let tool = tools[i];
                self.tgt.wipe().await?;
                let s = match tool {
                    Tool::AcrImport => self.run_acr_batch(images.len()).await?,
                    Tool::Skopeo => self.run_peer_batch(Peer::Skopeo, images.len()).await?,
                    Tool::Crane => self.run_peer_batch(Peer::Crane, images.len()).await?,
                    other => bail!("(batch) does not run {}", other.label()),
                };
                for (n, image) in images.iter().enumerate() {
                    self.verify_target(&backend_repo(&batch_repo(n)), image, tool.label())
                        .await?;
                }
                log(format!(
                    "(batch) run {}/{} {}: {:.2} s",
                    run + 1,
                    self.runs,
                    tool.label(),
                    s.wall.as_secs_f64()
                ));
                series[i].samples.push(s);
            }
        }
        self.tgt.wipe().await?;
        Ok(series)
    }
}
