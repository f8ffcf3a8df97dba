//! The life of a delivering process: it registers its node, runs the scheduler,
//! keeps its heartbeat, adopts orphaned work, and runs the retention janitor.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::scheduler::{now_ms, Scheduler};
use crate::{Engine, EngineError, EngineResult};

impl Engine {
    /// Announces this node as delivering, so that from now on what this process
    /// commits is its own to send. Call before taking ingests; `run_workers` calls
    /// it when it was not.
    pub async fn register_workers(&self) -> EngineResult<()> {
        if !self.inner.delivering.load(Ordering::Acquire) {
            self.inner
                .store
                .register_node(&self.inner.node, now_ms())
                .await?;
            self.inner.delivering.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Runs the delivery workers until `shutdown`: announces this node, adopts every
    /// orphaned delivery (at start, what a previous run left), keeps its heartbeat,
    /// and keeps adopting what other processes leave (woken by the store, or by
    /// polling).
    pub async fn run_workers(&self, shutdown: CancellationToken) -> EngineResult<()> {
        let Some((receiver, ctx)) = self
            .inner
            .scheduler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Err(EngineError::Conflict(
                "the workers are already running".into(),
            ));
        };
        let node = self.inner.node.clone();
        self.register_workers().await?;
        tracing::info!(node = %node, "delivery workers starting");
        let scheduler = Scheduler::new(
            receiver,
            self.inner.commands.clone(),
            self.inner.config.scheduler.clone(),
            ctx,
        );
        let running =
            tokio::spawn(scheduler.run(shutdown.clone(), self.inner.config.shutdown_grace));
        tokio::join!(
            self.heartbeat(shutdown.clone()),
            self.adopt(shutdown.clone()),
            self.run_janitor(shutdown.clone())
        );
        self.inner.delivering.store(false, Ordering::Release);
        running
            .await
            .map_err(|e| EngineError::Conflict(format!("the scheduler stopped: {e}")))
    }

    /// Whether this process delivers.
    pub fn is_delivering(&self) -> bool {
        self.inner.delivering.load(Ordering::Acquire)
    }

    /// Deletes what retention lets go, in small batches that leave room for the
    /// hot path between them, every `janitor_interval` until `shutdown`.
    pub async fn run_janitor(&self, shutdown: CancellationToken) {
        const BATCH: u32 = 500;
        let config = &self.inner.config;
        loop {
            loop {
                let now = now_ms();
                let messages_before = now - config.retention.as_millis() as i64;
                let attempts_before = now - config.attempt_retention.as_millis() as i64;
                match self
                    .inner
                    .store
                    .purge(messages_before, attempts_before, BATCH)
                    .await
                {
                    Ok(purged) => {
                        if purged.messages + purged.attempts > 0 {
                            tracing::info!(
                                messages = purged.messages,
                                attempts = purged.attempts,
                                "retention: deleted"
                            );
                        }
                        if purged.messages < BATCH as u64 && purged.attempts < BATCH as u64 {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "retention failed; trying again later");
                        break;
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(config.janitor_interval) => {}
            }
        }
    }

    async fn heartbeat(&self, shutdown: CancellationToken) {
        let every = self.inner.config.node_timeout / 3;
        loop {
            if let Err(e) = self.inner.store.heartbeat(&self.inner.node, now_ms()).await {
                tracing::warn!(error = %e, "heartbeat failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    async fn adopt(&self, shutdown: CancellationToken) {
        const PAGE: u32 = 1000;
        let signal = self.inner.store.work_signal();
        let stale = self.inner.config.node_timeout.as_millis() as i64;
        let mut failures = 0u32;
        loop {
            loop {
                let now = now_ms();
                match self
                    .inner
                    .store
                    .adopt_orphans(&self.inner.node, now, now - stale, PAGE)
                    .await
                {
                    Ok(adopted) => {
                        failures = 0;
                        if !adopted.is_empty() {
                            tracing::info!(count = adopted.len(), "adopted deliveries");
                        }
                        let full = adopted.len() == PAGE as usize;
                        if let Err(e) = self.schedule(&adopted, None).await {
                            tracing::warn!(error = %e, "cannot schedule adopted deliveries");
                        }
                        if !full || shutdown.is_cancelled() {
                            break;
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %e, "cannot look for orphaned deliveries");
                        break;
                    }
                }
            }
            // Back off while the store fails; otherwise the poll interval.
            let wait = self.inner.config.poll_interval * 2u32.pow(failures.min(5));
            let wake = async {
                match &signal {
                    Some(s) => s.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = wake => {}
            }
        }
    }
}
