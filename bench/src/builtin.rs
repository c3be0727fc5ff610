//! Scenarios (d) and (e): the (a) image imported into docker-registry against into the
//! built-in registry (and pushed there by the peers), and pulled back from each.

use super::*;

impl Bench {
    /// A fresh service writing into `target`: for the built-in registry on an empty data dir
    /// (`--data-dir`, so `registry/` is on the same disk as docker-registry's storage); for
    /// docker-registry after wiping it.
    pub(super) async fn fresh_service(&mut self, target: Target) -> Result<Svc> {
        let data_dir = self.builtin_dir.join("data");
        remove_dir(&data_dir).await?;
        let config = match target {
            Target::DockerRegistry => {
                self.tgt.wipe().await?;
                ServiceConfig::new(self.db.url(), &self.tgt.url())
            }
            Target::BuiltinPostgres => ServiceConfig::new(self.db.url(), "unused")
                .builtin_registry(false)
                .flag("--data-dir", data_dir.display()),
            Target::BuiltinSqlite => {
                ServiceConfig::sqlite(&data_dir, "unused").builtin_registry(false)
            }
            Target::BuiltinSqliteFsync => ServiceConfig::sqlite(&data_dir, "unused")
                .builtin_registry(false)
                .flag("--registry-durability", "fsync"),
        };
        Svc::start_with(config.workers(4)).await
    }

    /// One timed import of (d) by a fresh service into `target`, verified there.
    pub(super) async fn run_import_into(
        &mut self,
        target: Target,
        body: &Value,
        image: &BenchImage,
    ) -> Result<Sample> {
        let svc = self.fresh_service(target).await?;
        let tgt_pid = match target {
            Target::DockerRegistry => self.tgt.pid(),
            // The built-in registry is the service itself: its CPU is in the copier's.
            Target::BuiltinPostgres | Target::BuiltinSqlite | Target::BuiltinSqliteFsync => 0,
        };
        sync_disks().await?;
        let win = CpuWindow::open(self.src.pid(), tgt_pid, Some(svc.service.pid()));
        let wall = svc.timed_import(body).await?;
        let cpu = win.close(None);
        let peak_rss = Some(svc.service.peak_rss_bytes());
        // Untimed, for the reading: how long the writeback the import left behind takes (the
        // built-in registry does not fsync; docker-registry fsyncs every blob it commits).
        let t0 = Instant::now();
        sync_disks().await?;
        log(format!(
            "(d) {}: sync after the import took {:.2} s",
            target.tool().label(),
            t0.elapsed().as_secs_f64()
        ));
        verify_registry(
            &svc.service.registry_url(),
            &backend_repo(REPO_A),
            image,
            target.tool().label(),
        )
        .await?;
        Ok(Sample {
            wall,
            cpu,
            peak_rss,
        })
    }

    /// One timed copy of (d) by `peer` into the built-in registry of a fresh, idle service
    /// (SQLite store, empty data dir), through its plain login-server listener in the root
    /// view (`myreg/bench/multi`, where the service's own import writes), verified there.
    pub(super) async fn run_peer_into_builtin(
        &mut self,
        peer: Peer,
        image: &BenchImage,
    ) -> Result<Sample> {
        let svc = self.fresh_service(Target::BuiltinSqlite).await?;
        let registry = svc.service.registry_url();
        let host = registry.trim_start_matches("http://");
        let src = format!("{}/{REPO_A}:{TAG}", self.src.host());
        let dst = format!("{host}/{}:{TAG}", backend_repo(REPO_A));
        sync_disks().await?;
        let win = CpuWindow::open(self.src.pid(), svc.service.pid(), None);
        let t = self.peer_copy(peer, &src, &dst, false).await?;
        let cpu = win.close(Some(t.cpu_secs));
        sync_disks().await?;
        verify_registry(
            &registry,
            &backend_repo(REPO_A),
            image,
            peer.to_builtin().label(),
        )
        .await?;
        Ok(Sample {
            wall: t.wall,
            cpu,
            peak_rss: Some(t.max_rss),
        })
    }

    pub(super) async fn scenario_d(&mut self, image: &BenchImage) -> Result<Vec<Series>> {
        // The warm service of (a), (c) and (batch) would only add load: stop it.
        self.warm = None;
        let bytes = image.total_bytes();
        #[derive(Clone, Copy)]
        enum Variant {
            Import(Target),
            Peer(Peer),
        }
        let mut variants = vec![
            Variant::Import(Target::DockerRegistry),
            Variant::Import(Target::BuiltinPostgres),
            Variant::Import(Target::BuiltinSqlite),
            Variant::Import(Target::BuiltinSqliteFsync),
        ];
        variants.extend(self.peers().into_iter().map(Variant::Peer));
        let tool = |v: Variant| match v {
            Variant::Import(t) => t.tool(),
            Variant::Peer(p) => p.to_builtin(),
        };
        let mut series: Vec<Series> = variants
            .iter()
            .map(|v| Series::new(Scenario::D, tool(*v), bytes))
            .collect();
        let body = import_body(&self.src.host(), REPO_A, false);
        for run in 0..self.runs {
            // Rotate the order so drifting host load hits every variant alike.
            for k in 0..variants.len() {
                let i = (k + run) % variants.len();
                let s = match variants[i] {
                    Variant::Import(t) => self.run_import_into(t, &body, image).await?,
                    Variant::Peer(p) => self.run_peer_into_builtin(p, image).await?,
                };
                log(format!(
                    "(d) run {}/{} {}: {:.2} s, peak RSS {:.1} MiB",
                    run + 1,
                    self.runs,
                    tool(variants[i]).label(),
                    s.wall.as_secs_f64(),
                    s.peak_rss.unwrap_or(0) as f64 / 1048576.0
                ));
                series[i].samples.push(s);
            }
        }
        // Free the targets' copies.
        self.tgt.wipe().await?;
        remove_dir(&self.builtin_dir.join("data")).await?;
        Ok(series)
    }

    /// One timed `skopeo copy --all docker://HOST/REPO:v1 dir:…` from the registry at `host`
    /// (CPU of `registry_pid` reported as the source's), verified and deleted afterwards.
    pub(super) async fn run_pull(
        &self,
        host: &str,
        repo: &str,
        registry_pid: u32,
        image: &BenchImage,
        what: &str,
    ) -> Result<Sample> {
        let dest = self.scratch.join("pulled");
        remove_dir(&dest).await?;
        clear_skopeo_cache();
        sync_disks().await?;
        let args = vec![
            "copy".to_string(),
            "--all".to_string(),
            "--src-tls-verify=false".to_string(),
            format!("docker://{host}/{repo}:{TAG}"),
            format!("dir:{}", dest.display()),
        ];
        let win = CpuWindow::open(registry_pid, 0, None);
        let t = run_timed("skopeo", &args, &self.scratch).await?;
        let cpu = win.close(Some(t.cpu_secs));
        verify_pulled(&dest, image, what)?;
        remove_dir(&dest).await?;
        Ok(Sample {
            wall: t.wall,
            cpu,
            peak_rss: Some(t.max_rss),
        })
    }

    pub(super) async fn scenario_e(&mut self, image: &BenchImage) -> Result<Vec<Series>> {
        self.warm = None;
        let bytes = image.total_bytes();
        // docker-registry: the source, which holds the image as pushed by the bench; the
        // built-in registry: a service (SQLite, the zero-setup default) that imported it once.
        let svc = self.fresh_service(Target::BuiltinSqlite).await?;
        let body = import_body(&self.src.host(), REPO_A, false);
        let first = svc.timed_import(&body).await?;
        let builtin_url = svc.service.registry_url();
        let builtin_host = builtin_url.trim_start_matches("http://").to_string();
        let builtin_repo = backend_repo(REPO_A);
        verify_registry(&builtin_url, &builtin_repo, image, "(e) import").await?;
        log(format!(
            "(e) the built-in registry populated by an import (untimed): {:.2} s",
            first.as_secs_f64()
        ));
        let src_host = self.src.host();
        let variants = [
            (
                Tool::PullFromDockerRegistry,
                src_host.as_str(),
                REPO_A,
                self.src.pid(),
            ),
            (
                Tool::PullFromBuiltin,
                builtin_host.as_str(),
                builtin_repo.as_str(),
                svc.service.pid(),
            ),
        ];
        // One untimed pull from each, so both are served from a warm page cache alike.
        for (tool, host, repo, pid) in variants {
            self.run_pull(host, repo, pid, image, tool.label()).await?;
        }
        let mut series: Vec<Series> = variants
            .iter()
            .map(|v| Series::new(Scenario::E, v.0, bytes))
            .collect();
        for run in 0..self.runs {
            for k in 0..variants.len() {
                let i = (k + run) % variants.len();
                let (tool, host, repo, pid) = variants[i];
                let s = self.run_pull(host, repo, pid, image, tool.label()).await?;
                log(format!(
                    "(e) run {}/{} {}: {:.2} s",
                    run + 1,
                    self.runs,
                    tool.label(),
                    s.wall.as_secs_f64()
                ));
                series[i].samples.push(s);
            }
        }
        drop(svc);
        remove_dir(&self.builtin_dir.join("data")).await?;
        Ok(series)
    }
}
