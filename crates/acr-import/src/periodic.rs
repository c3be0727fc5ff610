//! The service's periodic background tasks (the built-in registry's garbage collection,
//! idle-upload sweep and disk-usage measurement; the retention sweep) share one loop, so they
//! share its timing and shutdown behaviour too.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// When a periodic task runs the first time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum First {
    /// At once (a measurement that should not wait an interval to exist).
    Now,
    /// One interval after the start (work that has nothing to do right after it).
    AfterInterval,
}

/// Runs `task` every `interval`, counted from the end of the previous run, until `stop` is
/// cancelled. `stop` is watched between runs only: a run in progress finishes. A disabled
/// task (an interval setting of 0) is one that is never started.
pub async fn every<F, Fut>(interval: Duration, first: First, stop: CancellationToken, mut task: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    if first == First::Now {
        task().await;
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        task().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Starts `every` with a task that counts its runs.
    fn counting(
        interval: Duration,
        first: First,
    ) -> (
        Arc<AtomicU32>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let runs = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let counter = runs.clone();
        let task = tokio::spawn(every(interval, first, stop.clone(), move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }));
        (runs, stop, task)
    }

    async fn until(runs: &AtomicU32, at_least: u32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < at_least {
            assert!(tokio::time::Instant::now() < deadline, "no run {at_least}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stopping ends the loop while it waits, without waiting for the interval.
    async fn stop_now(stop: CancellationToken, task: tokio::task::JoinHandle<()>) {
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stopped before the interval ended")
            .expect("task");
    }

    #[tokio::test]
    async fn the_first_run_is_at_once_or_after_one_interval() {
        let hour = Duration::from_secs(3600);
        let (runs, stop, task) = counting(hour, First::Now);
        until(&runs, 1).await;
        stop_now(stop, task).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        let (runs, stop, task) = counting(hour, First::AfterInterval);
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop_now(stop, task).await;
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn it_runs_every_interval_and_never_after_stop() {
        let (runs, stop, task) = counting(Duration::from_millis(20), First::AfterInterval);
        until(&runs, 3).await;
        stop_now(stop, task).await;
        let n = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(runs.load(Ordering::SeqCst), n);
    }

    #[tokio::test]
    async fn a_run_in_progress_finishes_after_stop() {
        let stop = CancellationToken::new();
        let finished = Arc::new(AtomicU32::new(0));
        let (token, done) = (stop.clone(), finished.clone());
        let task = tokio::spawn(every(
            Duration::from_secs(3600),
            First::Now,
            stop.clone(),
            move || {
                let (token, done) = (token.clone(), done.clone());
                async move {
                    token.cancel();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            },
        ));
        task.await.expect("task");
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }
}
