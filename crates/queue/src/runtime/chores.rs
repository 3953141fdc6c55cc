//! The node's chores besides running jobs: one heartbeat loop for every held lease,
//! maintenance (promotion, lease rescue, pruning, forgetting idle queues) and cron ticks.

use super::dispatch::SETTINGS_AT_MOST;
use super::Runtime;
use crate::model::JobId;
use crate::store::{self, QueueError};
use std::collections::HashMap;
use std::time::Duration;
use switchboard_core::id::ProjectId;
use tokio::sync::watch;

impl Runtime {
    /// One loop for the whole node: every heartbeat interval, the leases of all held jobs are
    /// extended in set-based statements; a job whose lease could not be extended (cancelled,
    /// deleted, or re-leased elsewhere) is told to stop.
    pub(super) async fn heartbeats(self, mut stop: watch::Receiver<bool>) {
        // At a fixed rhythm: a beat's own commit time does not push the next one later
        // (a late beat is followed by the next one on time, not an interval after it).
        let mut every = tokio::time::interval_at(
            tokio::time::Instant::now() + self.timing.heartbeat,
            self.timing.heartbeat,
        );
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = every.tick() => {},
            }
            let mut by_project: HashMap<String, (ProjectId, Vec<(JobId, String)>)> = HashMap::new();
            for (id, h) in self
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                by_project
                    .entry(h.project.to_string())
                    .or_insert_with(|| (h.project.clone(), Vec::new()))
                    .1
                    .push((id.clone(), h.token.clone()));
            }
            if by_project.is_empty() {
                continue;
            }
            let beat = async {
                let mut tx = self.db.begin().await?;
                let mut lost = Vec::new();
                for (project, pairs) in by_project.values() {
                    let kept =
                        store::heartbeat_many(&mut tx, project, pairs, self.timing.lease_ms())
                            .await?;
                    lost.extend(
                        pairs
                            .iter()
                            .filter(|(id, _)| !kept.contains(id))
                            .map(|(id, _)| id.clone()),
                    );
                }
                tx.commit().await?;
                Ok::<_, QueueError>(lost)
            }
            .await;
            match beat {
                Ok(lost) => {
                    for id in lost {
                        self.signal_cancel(&id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed; will retry"),
            }
        }
    }

    pub(super) async fn maintenance(self, mut stop: watch::Receiver<bool>) {
        let long_ago = std::time::Instant::now() - Duration::from_secs(10);
        let mut last = LastRun {
            prune: std::time::Instant::now(),
            rescue: long_ago,
            sweep: std::time::Instant::now(),
        };
        loop {
            if let Err(e) = self.maintain_once(&mut last).await {
                tracing::warn!(error = %e, "queue maintenance failed; retrying");
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(self.timing.maintenance) => {},
            }
        }
    }

    async fn maintain_once(&self, last: &mut LastRun) -> Result<(), QueueError> {
        let mut tx = self.db.begin().await?;
        let woken = store::promote_due(&mut tx, 5_000).await?;
        // Lapsed leases are looked for a few times per lease, which keeps the promise of a
        // rescue soon after a lease ends without scanning for them every tick.
        let rescued = if last.rescue.elapsed() >= self.timing.rescue_every() {
            last.rescue = std::time::Instant::now();
            store::rescue_expired(&mut tx, 1_000).await?
        } else {
            0
        };
        tx.commit().await?;
        if rescued > 0 {
            tracing::warn!(rescued, "jobs with lapsed leases made retryable");
        }
        // The queues of promoted jobs were woken as the commit returned (on SQLite; through
        // LISTEN on PostgreSQL): see `store::promote_due`.
        if !woken.is_empty() || rescued > 0 {
            self.wake.wake_dispatcher(None);
        }
        if last.sweep.elapsed() >= (self.timing.idle / 4).max(self.timing.maintenance) {
            last.sweep = std::time::Instant::now();
            self.forget_idle();
        }
        if last.prune.elapsed() >= Duration::from_secs(60) {
            last.prune = std::time::Instant::now();
            let mut tx = self.db.begin().await?;
            let n = store::prune(&mut tx, 10_000).await?;
            tx.commit().await?;
            if n > 0 {
                tracing::info!(pruned = n, "finished jobs past retention deleted");
            }
        }
        Ok(())
    }

    /// Drops what the runtime keeps for queues idle longer than [`Timing::idle`]: the slots
    /// of queues holding no job that no dispatcher pass has found runnable since, wake-up
    /// notifiers no claimer waits on, announcements of jobs in queues without slots (a
    /// queue's slots start reading it from the top anyway) and settings read long ago. A
    /// queue that gets work again starts afresh.
    fn forget_idle(&self) {
        let idle = self.timing.idle;
        let kept: std::collections::HashSet<(String, String)> = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.retain(|_, (s, seen)| {
                s.in_hand.load(std::sync::atomic::Ordering::SeqCst) > 0 || seen.elapsed() < idle
            });
            slots.keys().cloned().collect()
        };
        self.wake
            .forget(|p, q| kept.contains(&(p.to_owned(), q.to_owned())));
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queues
            .retain(|_, (_, at)| at.elapsed() < SETTINGS_AT_MOST);
    }

    /// Turns due cron schedules into jobs: a pass every second, and another at once while a
    /// pass had to leave due schedules for later (see [`crate::schedules::tick`]). Apart from
    /// maintenance, so a long pass never holds up promotions and lease rescues.
    pub(super) async fn cron(self, mut stop: watch::Receiver<bool>) {
        loop {
            let more = match crate::schedules::tick(
                &self.db,
                &self.kinds,
                60,
                &self.admission,
                CRON_PASS_AT_MOST,
            )
            .await
            {
                Ok(t) => {
                    if t.enqueued > 0 {
                        self.wake.wake_dispatcher(None);
                    }
                    t.more
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cron tick failed; retrying");
                    false
                }
            };
            let pause = if more {
                Duration::ZERO
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(pause) => {},
            }
        }
    }
}

/// When maintenance last did its less frequent chores.
struct LastRun {
    prune: std::time::Instant,
    rescue: std::time::Instant,
    sweep: std::time::Instant,
}

/// How long one cron pass may run before it returns (the next starts at once if schedules
/// are still due).
const CRON_PASS_AT_MOST: Duration = Duration::from_secs(1);
