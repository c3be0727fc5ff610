//! A fresh PostgreSQL database per test, dropped (best effort) when the handle is dropped.
//!
//! The server is the one `scripts/test.sh` makes sure of: `ACR_TEST_DATABASE_URL` if set,
//! else `postgres://postgres@127.0.0.1:5432/postgres`. Each test gets `acr_t_<random>`, so
//! tests can run in parallel and a crashed run leaves only a uniquely named database behind.

use sqlx::{Connection, PgConnection};

/// The admin URL the harness creates databases through.
pub fn admin_url() -> String {
    std::env::var("ACR_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates `acr_t_<random>` and returns a handle whose [`url`](Self::url) points at it.
    pub async fn create() -> Self {
        let admin_url = admin_url();
        let name = format!("acr_t_{}", crate::util::random_suffix(12));
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to PostgreSQL at {admin_url}: {e} (run scripts/test.sh, or set ACR_TEST_DATABASE_URL)"));
        sqlx::query(&format!("create database {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin_url).expect("ACR_TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        Self {
            name,
            url: url.to_string(),
            admin_url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection to this test's database (for assertions on what the service stored).
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime; run the async cleanup on a thread of its own.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// A private, throwaway PostgreSQL cluster (`initdb` + `pg_ctl` into a temp dir, trust auth,
/// listening on 127.0.0.1:<free port> with its socket in the same temp dir) that a test may
/// stop and start at will without disturbing the shared server other tests use. Stopped
/// (`immediate`) and removed on drop.
///
/// The binaries come from `$ACR_TEST_PG_BIN`, else the newest `/usr/lib/postgresql/<ver>/bin`,
/// else `PATH`. When the tests run as root the cluster runs as the `postgres` user (PostgreSQL
/// refuses to run as root).
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
}

impl PgCluster {
    /// Creates the cluster and starts it.
    pub async fn start() -> Self {
        let bin = pg_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("acr-pg-")
            .tempdir()
            .expect("temp dir for PostgreSQL");
        let run_as = if running_as_root() {
            let ids = postgres_user_ids();
            std::os::unix::fs::chown(dir.path(), Some(ids.0), Some(ids.1))
                .expect("chown the cluster directory to postgres");
            Some(ids)
        } else {
            None
        };
        let cluster = Self {
            dir,
            bin,
            port: crate::util::free_port(),
            run_as,
        };
        let data = cluster.data_dir();
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.start_server().await;
        cluster
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log file.
    pub fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("postgres.log")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, program: &str) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(self.dir.path())
            .env_remove("PGDATA")
            .env("LC_ALL", "C");
        cmd
    }

    /// Starts the server (again) on the same port and waits until it accepts connections.
    pub async fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-o", &opts, "-w", "-t", "30", "start"])
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\n--- postgres.log ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            crate::util::tail_file(&self.log_path(), 30)
        );
        let url = self.url();
        crate::util::poll_until(
            "the private PostgreSQL to accept connections",
            std::time::Duration::from_secs(30),
            std::time::Duration::from_millis(100),
            || async {
                let conn = PgConnection::connect(&url).await.ok()?;
                let _ = conn.close().await;
                Some(())
            },
        )
        .await;
    }

    /// Stops the server the hard way (`pg_ctl stop -m immediate`: every backend is killed, as
    /// in a crash; the next start recovers from the WAL).
    pub fn stop_server(&self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .output()
            .expect("run pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "-t", "10", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn pg_bin_dir() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("ACR_TEST_PG_BIN").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .max_by_key(|(v, _)| *v);
    match newest {
        Some((_, bin)) => bin,
        // Empty: `Command` then looks the programs up in PATH.
        None => std::path::PathBuf::new(),
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// (uid, gid) of the `postgres` user.
fn postgres_user_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = std::process::Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no postgres user (needed to run PostgreSQL as root)"))
    };
    (id("-u"), id("-g"))
}
