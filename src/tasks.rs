//! Background work of a node (storing what arrived by plain `PUBLISH`,
//! recording refused payloads, acknowledgements, campaign checks): bounded,
//! tracked, and drained at shutdown.
//!
//! Every job runs only if fewer than the limit are running: past it the job
//! is shed, not queued, and counted in `herald_background_shed_total{job}`,
//! so a flood of bad `PUBLISH`es or acks costs a bounded number of tasks.
//! At shutdown the node stops taking jobs, waits for the running ones up to
//! its grace, and cancels what is left.

use crate::metrics::Metrics;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Background {
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
}

impl Background {
    /// At most `limit` jobs at once.
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            tracker: TaskTracker::new(),
            permits: Arc::new(Semaphore::new(limit)),
            cancel: CancellationToken::new(),
            metrics,
        }
    }

    /// Runs `work` as a task, unless the limit is reached or the node is
    /// stopping: then it is shed, and counted. Returns whether it runs.
    pub fn spawn(
        &self,
        job: &'static str,
        work: impl Future<Output = ()> + Send + 'static,
    ) -> bool {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) if !self.tracker.is_closed() => p,
            _ => {
                self.metrics.background_shed(job);
                tracing::debug!(job, "background job shed");
                return false;
            }
        };
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = work => {}
                () = cancel.cancelled() => {}
            }
        });
        true
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Takes no more jobs, waits up to `grace` for the running ones, then
    /// cancels the rest.
    pub async fn drain(&self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.tracker.len(),
                "background jobs cancelled at shutdown"
            );
            self.cancel.cancel();
            self.tracker.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_limit_jobs_are_shed_and_counted() {
        let metrics = Arc::new(Metrics::default());
        let bg = Background::new(2, metrics.clone());
        let gate = Arc::new(Semaphore::new(0));
        for _ in 0..2 {
            let g = gate.clone();
            assert!(bg.spawn("test", async move {
                let _ = g.acquire().await;
            }));
        }
        assert!(!bg.spawn("test", async {}), "a third is shed");
        assert_eq!(metrics.background_shed_count("test"), 1);
        gate.add_permits(2);
        // Once they finished, a job runs again: positive control.
        tokio::time::timeout(Duration::from_secs(5), async {
            while bg.running() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("jobs finish");
        assert!(bg.spawn("test", async {}));
    }

    #[tokio::test]
    async fn shutdown_waits_then_cancels() {
        let bg = Background::new(8, Arc::new(Metrics::default()));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        bg.spawn("quick", async move {
            d.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        bg.spawn("stuck", std::future::pending());
        tokio::time::timeout(Duration::from_secs(5), bg.drain(Duration::from_millis(50)))
            .await
            .expect("drained");
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(bg.running(), 0);
        assert!(!bg.spawn("late", async {}), "no jobs after shutdown");
    }
}
