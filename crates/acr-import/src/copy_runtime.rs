//! The import workers' own runtime: copies run on threads of their own, so that an
//! `importImage` POST is answered (its 202 leaves once the operation is stored) while four
//! copies hash, write and stream on the same two cores.
//!
//! On one runtime a request's task waits in the same run queues as the copies' tasks, behind
//! whatever polls they have queued; on two, the API's threads turn to a request as soon as the
//! kernel runs them. Measured (issue 14, `docs/BENCHMARKS.md`): the accept scenario's p99 on
//! SQLite was 19.5 ms with the workers on the API's runtime, 10.2 ms on their own.
//!
//! The threads keep the process's priority. Running them below it (nice 10) was tried and was
//! slower (p99 14.3 ms): what a worker opens inherits its priority (a SQLite connection's
//! thread, a PostgreSQL socket driven by the workers' reactor), and the API then waits on it.
//!
//! Resources work across the two runtimes: a socket is driven by the reactor of the runtime it
//! was opened on, whichever task polls it; a JoinHandle is awaited from either. A socket the
//! API waits on must not be on this runtime's reactor, polled late while copies keep its
//! threads busy: the workers get PostgreSQL connections of their own
//! (`Store::with_own_connections`, opened here). What only the copies use runs here too: the
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
    /// A multi-thread runtime with one worker thread per core.
    pub fn new() -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("acr-copy")
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
        let rt = CopyRuntime::new().expect("runtime");
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
}
