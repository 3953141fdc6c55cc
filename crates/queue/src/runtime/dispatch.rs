//! Claiming and running jobs: which queues a pass claims from, how many jobs each queue's
//! slots hold, and one attempt of a job (push delivery or in-process handler).

use super::complete::Outcome;
use super::{Held, Runtime};
use crate::handler::{JobContext, JobError};
use crate::model::*;
use crate::push::Delivery;
use crate::store::{self, ClaimFor, Completion, Hints, QueueError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_core::db::Backend;
use switchboard_core::id::ProjectId;
use tokio::sync::{watch, Semaphore};

/// A queue's per-node concurrency: the configured limit, its semaphore, and how many jobs
/// this node holds (claimed, running or waiting for a slot).
#[derive(Clone)]
pub(super) struct Slots {
    concurrency: i32,
    sem: Arc<Semaphore>,
    pub(super) in_hand: Arc<std::sync::atomic::AtomicUsize>,
    /// Moving average of run time, µs (starts pessimistic at one second).
    mean_run_us: Arc<std::sync::atomic::AtomicU64>,
    /// The queue's run-time histogram, looked up once rather than per job, and the labels
    /// it was looked up with.
    run_seconds: metrics::Histogram,
    labels: [(&'static str, String); 2],
    /// Where the next claims start, when claims last started from the top, and the LISTEN
    /// epoch the hints were learnt in.
    hints: Arc<Mutex<(Hints, std::time::Instant, u64)>>,
    /// The queue keeps no completed jobs (as of the last dispatcher pass).
    remove_completed: Arc<std::sync::atomic::AtomicBool>,
    /// The queue, as `(project, queue)`.
    key: Arc<(String, String)>,
    /// The last claim took as many jobs as it asked for (more are probably waiting).
    backlog: Arc<std::sync::atomic::AtomicBool>,
}

impl Slots {
    fn new(project: &str, queue: &str, concurrency: i32) -> Slots {
        let labels = store::labels(project, queue);
        Slots {
            concurrency,
            sem: Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            in_hand: Arc::default(),
            mean_run_us: Arc::new(std::sync::atomic::AtomicU64::new(1_000_000)),
            run_seconds: metrics::histogram!("queue_job_run_seconds", &labels),
            labels,
            hints: Arc::new(Mutex::new((Hints::default(), std::time::Instant::now(), 0))),
            remove_completed: Arc::default(),
            key: Arc::new((project.to_owned(), queue.to_owned())),
            backlog: Arc::default(),
        }
    }

    /// How many jobs to hold: at least twice the concurrency; for fast jobs more, as long
    /// as the last one held would still start within a quarter of its lease.
    fn target(&self, lease_ms: i64) -> usize {
        let c = self.concurrency.max(1) as u64;
        let mean = self
            .mean_run_us
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(1);
        let by_time = c * (lease_ms.max(1) as u64 * 1000 / 4) / mean;
        by_time.clamp(2 * c, 2 * c.max(500)) as usize
    }

    /// Claim more once this few jobs are left in hand, so each claim carries a large batch.
    fn refill_at(&self, lease_ms: i64) -> usize {
        self.target(lease_ms) / 2
    }

    fn record_run(&self, took: Duration) {
        let us = took.as_micros().min(u64::MAX as u128) as u64;
        let old = self.mean_run_us.load(std::sync::atomic::Ordering::Relaxed);
        self.mean_run_us
            .store((old * 7 + us) / 8, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A queue's slots and when a dispatcher pass last found the queue runnable.
pub(super) type SlotsSeen = (Slots, std::time::Instant);

impl Runtime {
    pub(super) async fn dispatch(&self, mut stop: watch::Receiver<bool>) {
        if !self.dispatch {
            let _ = stop.changed().await;
            return;
        }
        let any = self.wake.get("*", "*");
        let mut polled = true;
        loop {
            if *stop.borrow() {
                return;
            }
            let failed = match self.dispatch_pass(polled).await {
                Ok(_) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "dispatcher pass failed; retrying");
                    true
                }
            };
            let timed_out = tokio::select! {
                _ = stop.changed() => return,
                _ = any.notified() => false,
                _ = tokio::time::sleep(self.timing.poll) => true,
            };
            // After a failed claim, jobs may sit behind a hint: read from the top.
            polled = timed_out || failed;
        }
    }

    /// Claims and starts what this node can run now; returns how many jobs started.
    pub async fn dispatch_once(&self) -> Result<usize, QueueError> {
        self.dispatch_pass(true).await
    }

    /// One dispatcher pass; `polled` when no wake-up started it (so claims read every
    /// queue from the top: a notification may have been lost).
    async fn dispatch_pass(&self, polled: bool) -> Result<usize, QueueError> {
        let queues = self.queues_to_claim(polled).await?;
        let mut started = 0;
        for store::Runnable {
            project,
            queue,
            concurrency,
            remove_completed,
            limited,
            ..
        } in queues
        {
            let slots = {
                let mut all = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                let (entry, seen) =
                    all.entry((project.clone(), queue.clone()))
                        .or_insert_with(|| {
                            (
                                Slots::new(&project, &queue, concurrency),
                                std::time::Instant::now(),
                            )
                        });
                *seen = std::time::Instant::now();
                if entry.concurrency != concurrency {
                    // Settings changed: new runs use the new limit; old runs finish on the old one.
                    *entry = Slots::new(&project, &queue, concurrency);
                }
                entry
                    .remove_completed
                    .store(remove_completed, std::sync::atomic::Ordering::Relaxed);
                entry.clone()
            };
            // A local queue (as Graphile Worker has), sized by observed run time; claim only
            // when half of it is free, so each claim transaction carries a large batch.
            let target = slots.target(self.timing.lease_ms());
            let in_hand = slots.in_hand.load(std::sync::atomic::Ordering::SeqCst);
            if in_hand > slots.refill_at(self.timing.lease_ms()) {
                continue;
            }
            let room = target - in_hand;
            let hints = self.hints_for(&slots, &project, &queue, polled);
            let project_id = ProjectId::from_db(project);
            let queue_name = QueueName::from_db(queue);
            let claim = store::Claim {
                project: &project_id,
                queue: &queue_name,
                who: ClaimFor::Runtime(&self.kinds, &hints),
                worker: &self.node,
                max: room as i64,
                lease_ms: self.timing.lease_ms(),
            };
            let backlog = slots.backlog.load(std::sync::atomic::Ordering::Relaxed);
            let split =
                self.db.backend() == Backend::Postgres && !limited && backlog && room >= 400;
            let asked = if split { room / 2 * 2 } else { room };
            let claimed = if split {
                // Two claims at once on two connections: a claim statement is CPU-bound in
                // one PostgreSQL backend, and SKIP LOCKED lets the second take the jobs the
                // first has not locked. Only while the last claim found more jobs than it
                // took: otherwise the second would mostly find nothing.
                let half = store::Claim {
                    max: room as i64 / 2,
                    ..claim
                };
                let (a, b) = tokio::join!(
                    store::claim_now(&self.db, &half, true),
                    store::claim_now(&self.db, &half, true)
                );
                let mut a = a?;
                a.extend(b?);
                a
            } else {
                store::claim_now(&self.db, &claim, !limited).await?
            };
            slots
                .backlog
                .store(claimed.len() >= asked, std::sync::atomic::Ordering::Relaxed);
            if self.db.backend() == Backend::Postgres {
                let mut h = slots.hints.lock().unwrap_or_else(|p| p.into_inner());
                h.0.advance(&claimed);
            }
            slots
                .in_hand
                .fetch_add(claimed.len(), std::sync::atomic::Ordering::SeqCst);
            for job in claimed {
                started += 1;
                let rt = self.clone();
                let project = project_id.clone();
                let slots = slots.clone();
                tokio::spawn(async move {
                    rt.execute(project, job, &slots).await;
                    let left = slots
                        .in_hand
                        .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
                        - 1;
                    // Wake the dispatcher only once the local queue wants refilling.
                    if left <= slots.refill_at(rt.timing.lease_ms()) {
                        let (p, q) = &*slots.key;
                        rt.wake.wake_dispatcher(Some((p, q)));
                    }
                });
            }
        }
        Ok(started)
    }

    /// The queues a dispatcher pass claims from. A pass woken only by wake-ups naming queues
    /// whose settings this node read less than [`SETTINGS_AT_MOST`] ago (and has not changed
    /// since) claims from just those, without asking the database which queues have work:
    /// under a stream of single-job enqueues that read was one extra round trip per job.
    /// Otherwise (the poll timer, a wake-up naming no queue, an unknown queue) the counters
    /// say which queues have work, and their settings are remembered.
    async fn queues_to_claim(&self, polled: bool) -> Result<Vec<store::Runnable>, QueueError> {
        let woken = self.wake.take_woken();
        let epoch = self.wake.settings_epoch();
        if !polled && !woken.any && !woken.queues.is_empty() {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            if known.epoch == epoch {
                let direct: Option<Vec<store::Runnable>> = woken
                    .queues
                    .iter()
                    .map(|k| {
                        known
                            .queues
                            .get(k)
                            .filter(|(_, at)| at.elapsed() < SETTINGS_AT_MOST)
                            .map(|(r, _)| r.clone())
                    })
                    .collect();
                if let Some(direct) = direct {
                    return Ok(direct);
                }
            }
        }
        let rotation = self
            .rotation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let queues = {
            let mut conn = self.db.read().await?;
            store::runnable_queues(conn.ex(), &rotation, RUNNABLE_AT_MOST).await?
        };
        self.rotation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .advance(&queues, RUNNABLE_AT_MOST);
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.epoch != epoch {
            known.queues.clear();
            known.epoch = epoch;
        }
        let now = std::time::Instant::now();
        known
            .queues
            .retain(|_, (_, at)| at.elapsed() < SETTINGS_AT_MOST);
        for r in &queues {
            known
                .queues
                .insert((r.project.clone(), r.queue.clone()), (r.clone(), now));
        }
        Ok(queues)
    }

    /// The hints for the next claim of a queue (PostgreSQL only): moved back to a job
    /// announced since that sorts before them; dropped when this pass was started by the poll
    /// timer, LISTEN restarted (notifications may have been lost), or [`HINTS_AT_MOST`] went
    /// by since claims last read from the top.
    fn hints_for(&self, slots: &Slots, project: &str, queue: &str, polled: bool) -> Hints {
        let announced = self.wake.take_announced(project, queue);
        if self.db.backend() != Backend::Postgres {
            return Hints::default();
        }
        let mut h = slots.hints.lock().unwrap_or_else(|p| p.into_inner());
        let epoch = self.wake.epoch();
        if polled || h.2 != epoch || h.1.elapsed() >= HINTS_AT_MOST {
            tracing::debug!(polled, "claim hints: from the top");
            h.0 = Hints::default();
            h.2 = epoch;
        }
        if let Some(first) = announced {
            if h.0.rewind(first.as_ref()) {
                tracing::trace!(?first, "claim hints: back to an announced job");
            }
        }
        if h.0.local.is_none() && h.0.push.is_none() {
            h.1 = std::time::Instant::now();
        }
        h.0.clone()
    }

    /// Runs one claimed job: its lease is heartbeated from the moment it is claimed, and it
    /// starts when the queue has a free slot on this node.
    async fn execute(&self, project: ProjectId, claimed: ClaimedJob, slots: &Slots) {
        let ClaimedJob { job, lease_token } = claimed;
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let held = Held {
            project: project.clone(),
            token: lease_token.clone(),
            cancel: cancel_tx,
        };
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id.clone(), held);
        let Ok(_permit) = slots.sem.clone().acquire_owned().await else {
            return;
        };
        let start = std::time::Instant::now();
        let outcome = self.run_attempt(&project, &job, cancel_rx.clone()).await;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job.id);
        let took = start.elapsed();
        slots.record_run(took);
        // The labels are asked for again: the pair's place in the label budget may have
        // changed since the histogram was looked up (and asking keeps it in use).
        let (p, q) = &*slots.key;
        let labels = store::labels(p, q);
        if labels == slots.labels {
            slots.run_seconds.record(took.as_secs_f64());
        } else {
            metrics::histogram!("queue_job_run_seconds", &labels).record(took.as_secs_f64());
        }
        if *cancel_rx.borrow() {
            tracing::info!(job = %job.id, "job cancelled or lease lost; outcome discarded");
            return;
        }
        let outcome = match outcome {
            Ok(result) => Outcome::Done(Completion {
                project,
                queue: job.queue.clone(),
                id: job.id.clone(),
                token: lease_token,
                result,
                remove: slots
                    .remove_completed
                    .load(std::sync::atomic::Ordering::Relaxed),
            }),
            Err(error) => Outcome::Failed {
                project,
                id: job.id.clone(),
                token: lease_token,
                error,
            },
        };
        if self.outcomes.send(outcome).is_err() {
            tracing::warn!(job = %job.id, "runtime stopped; the job's lease will lapse and it will run again");
        }
    }

    async fn run_attempt(
        &self,
        project: &ProjectId,
        job: &Job,
        cancelled: watch::Receiver<bool>,
    ) -> Result<Option<serde_json::Value>, JobError> {
        if let Some(target) = &job.target {
            let secret = self
                .push_secret(project)
                .await
                .map_err(|e| JobError::retry(format!("cannot load signing secret: {e}")))?;
            return match self.push.deliver(&secret, job, target).await {
                Delivery::Done(body) => Ok(body),
                Delivery::Retry {
                    error,
                    retry_after_ms,
                } => Err(JobError {
                    message: error,
                    retry_after_ms,
                    permanent: false,
                }),
                Delivery::Fail(error) => Err(JobError::permanent(error)),
            };
        }
        let Some(handler) = self.handlers.get(job.kind.as_str()).cloned() else {
            return Err(JobError::retry(format!(
                "no handler for kind `{}` on this node",
                job.kind.as_str()
            )));
        };
        let timeout = Duration::from_millis(job.timeout_ms.max(1) as u64);
        let ctx = JobContext {
            job: job.clone(),
            project: project.clone(),
            db: self.db.clone(),
            services: self.services.clone(),
            cancelled,
        };
        match tokio::time::timeout(timeout, handler.run(ctx)).await {
            Ok(Ok(Some(result))) if json_len(&result) > MAX_RESULT_BYTES => {
                tracing::warn!(job = %job.id, kind = job.kind.as_str(), limit = MAX_RESULT_BYTES,
                    "handler result too large; stored as truncated");
                Ok(Some(truncated_result()))
            }
            Ok(r) => r,
            Err(_) => Err(JobError::retry(format!(
                "timed out after {} ms",
                job.timeout_ms
            ))),
        }
    }
}

/// The longest claims read on from hints before reading a queue from the top again. Every
/// way a job becomes available announces it (NOTIFY after enqueue, promotion, retry), so this
/// only bounds the wait of a job behind a hint for reasons no one announces: a claim elsewhere
/// that locked it, so ours skipped it, and then rolled back. Reading from the top costs a
/// walk over the dead index entries of jobs claimed since the last vacuum (5–9 ms after a
/// 100,000-job burst), which is why it is not done every pass.
const HINTS_AT_MOST: Duration = Duration::from_secs(5);

/// How long the dispatcher claims from a woken queue on the settings it read before (see
/// `queues_to_claim`): a pause or new limit made through another node reaches this node's
/// claims within this time (through this node: at once).
pub(super) const SETTINGS_AT_MOST: Duration = Duration::from_millis(500);

/// Settings of queues the dispatcher read recently, with when it read them.
#[derive(Default)]
pub(super) struct Known {
    /// [`Wakeups::settings_epoch`] when they were read.
    epoch: u64,
    pub(super) queues: HashMap<(String, String), (store::Runnable, std::time::Instant)>,
}

/// The most queues one dispatcher read of the counters returns (taking turns across
/// projects, see [`store::runnable_queues`]).
const RUNNABLE_AT_MOST: i64 = 1_000;
