//! The import workers' own runtime: copies run on threads of their own, so that an
//! `importImage` POST is answered (its 202 leaves once the operation is stored) while four
//! copies hash, write and stream on the same two cores.
//!
//! On one runtime a request's task waits in the same run queues as the copies' tasks, behind
//! whatever polls they have queued; on two, the API's threads turn to a request as soon as the
//! kernel runs them. Measured (issue 14, `docs/BENCHMARKS.md`): the accept scenario's p99 on
//! SQLite was 19.5 ms with the workers on the API's runtime, 10.2 ms on their own.
//!
//! The threads run below the API's CPU priority (`--copy-nice`, 10 by default: their
//! niceness is the process's plus that), so that when the copies and a request want the two
//! cores at once, the kernel runs the request's thread first. They yield to every other
//! process too: into the built-in registry from a source on the same machine, (d) took 2 %
//! longer; 0 keeps the API's priority. Every thread of the runtime is lowered as it starts
//! (its blocking pool's too); what it creates inherits that, so nothing the API waits for may
//! be created here: the SQLite writer thread is started by the caller of `Store::for_workers`,
//! and the API's PostgreSQL connections are opened by API tasks (PostgreSQL's own processes
//! keep theirs). A first try (before the two points above held) was slower: the API then
//! waited on a SQLite connection's thread and PostgreSQL sockets opened on lowered threads.
//! Measured (issue 14, `docs/BENCHMARKS.md`, "the copies below the API's CPU priority"): the
//! accept scenario's p99 on PostgreSQL fell from 43-240 ms to 12-16 ms in 4 of 4 pairs.
//!
//! Resources work across the two runtimes: a socket is driven by the reactor of the runtime it
//! was opened on, whichever task polls it; a JoinHandle is awaited from either. A socket the
//! API waits on must not be on this runtime's reactor, polled late while copies keep its
//! threads busy: the workers get PostgreSQL connections of their own
//! (`Store::for_workers`, opened here). What only the copies use runs here too: the
//! built-in registry's internal listener (`builtin.rs`), which answers the workers' requests.
//! Measured (`docs/BENCHMARKS.md`, issue 14): the two together took the accept scenario's p50
//! on SQLite from 1.6-1.9 ms to 1.1-1.2 ms, and on PostgreSQL from 4.2-5.1 ms to 3.7-4.0 ms.

/// Owns the workers' runtime. Dropping it (at the end of `serve`, after the workers stopped and
/// the store closed) shuts it down without blocking the caller, itself a runtime's task.
pub struct CopyRuntime {
    handle: tokio::runtime::Handle,
    /// Taken only by `drop` (`shutdown_background` consumes the runtime).
    runtime: Option<tokio::runtime::Runtime>,
}

impl CopyRuntime {
    /// A multi-thread runtime with one worker thread per core, each thread (its blocking
    /// pool's too) `nice` steps below the caller's priority (see the module's doc).
    pub fn new(nice: i32) -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let base = niceness();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("acr-copy")
            .on_thread_start(move || lower_this_thread(base, nice))
            .enable_all()
            .build()?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

/// The calling thread's niceness (on Linux a thread's own; 0 elsewhere).
fn niceness() -> i32 {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getpriority_process(None).unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Sets the calling thread's niceness to `base + by` (at most 19). On Linux a niceness is a
/// thread's own (`setpriority(PRIO_PROCESS, 0)` names the calling thread); elsewhere it would
/// be the whole process's, so nothing is done there. Raising one's niceness needs no
/// privilege; should it fail all the same, the thread keeps running at the API's priority.
fn lower_this_thread(base: i32, by: i32) {
    if by == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(None, (base + by).min(19)) {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(error = %e, "cannot lower the workers' CPU priority; they keep the API's");
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = base;
}

impl Drop for CopyRuntime {
    fn drop(&mut self) {
        if let Some(r) = self.runtime.take() {
            // What is left are idle pooled connections' tasks.
            r.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work spawned on it runs on its own named threads, and dropping it inside another
    /// runtime's task (as `serve` does) neither blocks nor panics.
    #[tokio::test]
    async fn copies_run_on_their_own_threads_and_the_runtime_drops_inside_another() {
        let rt = CopyRuntime::new(0).expect("runtime");
        let name = rt
            .handle()
            .spawn(async { std::thread::current().name().map(str::to_owned) })
            .await
            .expect("task");
        assert_eq!(name.as_deref(), Some("acr-copy"));
        assert_ne!(
            std::thread::current().name(),
            Some("acr-copy"),
            "the test's own runtime is another"
        );
        drop(rt);
    }

    /// Its threads, the blocking pool's too, run `nice` steps below the creator's priority,
    /// at most 19; the creator's own is unchanged.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn its_threads_run_below_the_creators_priority() {
        let here = niceness();
        let rt = CopyRuntime::new(7).expect("runtime");
        let worker = rt.handle().spawn(async { niceness() }).await.expect("task");
        let blocking = rt
            .handle()
            .spawn_blocking(niceness)
            .await
            .expect("blocking task");
        assert_eq!(worker, (here + 7).min(19));
        assert_eq!(blocking, (here + 7).min(19));
        assert_eq!(niceness(), here, "the creator's thread keeps its priority");
        drop(rt);
        let same = CopyRuntime::new(0).expect("runtime");
        let worker = same
            .handle()
            .spawn(async { niceness() })
            .await
            .expect("task");
        assert_eq!(worker, here, "0: the creator's priority");
        drop(same);
    }
}
