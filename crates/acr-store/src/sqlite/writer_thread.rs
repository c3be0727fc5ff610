//! A thread of its own for the workers' SQLite write transactions.
//!
//! SQLite has one writer connection (`sqlite.rs`), and a write transaction holds it from
//! `BEGIN IMMEDIATE` to `COMMIT`: a claim is four trips to the connection's thread, a finish
//! three or four, the data plane's metadata of an import about ten. Between two trips the
//! transaction's task must be polled again; on the workers' runtime that poll waits behind
//! the copies' polls while every core is busy, and an `importImage` POST's enqueue, next in
//! line for the writer (`write_gate.rs`), waits for all of it. On a runtime of its own, with
//! nothing else to run, the next trip is sent as soon as the kernel runs its thread.

use std::future::Future;

use crate::StoreError;

/// A one-thread runtime; dropping it shuts it down without blocking (a transaction cut off
/// by the drop rolls back when its connection is returned).
#[derive(Debug)]
pub(crate) struct WriterThread {
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl WriterThread {
    pub(crate) fn start() -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("acr-sqlite-writes")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Runs `fut` on the thread and waits for it. A panic in it panics here.
    pub(crate) async fn run<T, Fut>(&self, fut: Fut) -> Result<T, StoreError>
    where
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        match self.handle.spawn(fut).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Shut down (the store is being dropped).
            Err(_) => Err(StoreError::Unavailable(sqlx::Error::PoolClosed)),
        }
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        if let Some(r) = self.runtime.take() {
            r.shutdown_background();
        }
    }
}
