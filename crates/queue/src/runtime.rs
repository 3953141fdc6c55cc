//! The node's runtime: runs push jobs and jobs of in-process handlers with per-queue
//! concurrency, heartbeats their leases, honours cancellation, and runs maintenance
//! (promotion of due jobs, rescue of lapsed leases, cron ticks, retention pruning).

use crate::egress::Egress;
use crate::gather::Gatherer;
use crate::limits::{Limits, QueueAdmission};
use crate::model::*;
use crate::push::{self, Delivery, Pusher};
use crate::store::{
    self, ClaimFor, Completion, Enqueued, FailOptions, Hints, QueueError, Rotation,
};
use crate::wake::Wakeups;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_core::config::PushAllow;
use switchboard_core::db::{Backend, Db};
use switchboard_core::id::ProjectId;
use switchboard_core::on_db;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

/// A job this node holds, whose lease the heartbeat loop extends.
struct Held {
    project: ProjectId,
    token: String,
    cancel: watch::Sender<bool>,
}

/// A finished attempt waiting to be recorded by the completer.
enum Outcome {
    Done(Completion),
    Failed {
        project: ProjectId,
        id: String,
        token: String,
        error: JobError,
    },
    /// Everything sent before this is committed when the sender is answered.
    Drain(oneshot::Sender<()>),
}

/// Why a handler failed.
#[derive(Debug, Clone)]
pub struct JobError {
    /// What went wrong.
    pub message: String,
    /// Wait at least this long before the next attempt.
    pub retry_after_ms: Option<i64>,
    /// Do not retry.
    pub permanent: bool,
}

impl JobError {
    /// A retryable failure.
    pub fn retry(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retry_after_ms: None,
            permanent: false,
        }
    }
    /// A failure retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retry_after_ms: None,
            permanent: true,
        }
    }
}

/// What a handler sees.
pub struct JobContext {
    /// The job.
    pub job: Job,
    /// Becomes true when the job is cancelled (or its lease is lost).
    pub cancelled: watch::Receiver<bool>,
}

/// Output of a handler run.
pub type HandlerFuture =
    Pin<Box<dyn Future<Output = Result<Option<serde_json::Value>, JobError>> + Send>>;

/// An in-process job handler.
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt.
    fn run(&self, ctx: JobContext) -> HandlerFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<serde_json::Value>, JobError>> + Send + 'static,
{
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(self(ctx))
    }
}

/// Timing of leases and maintenance.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How often running jobs heartbeat.
    pub heartbeat: Duration,
    /// How often due jobs are promoted and lapsed leases rescued.
    pub maintenance: Duration,
    /// How often the dispatcher polls when nothing wakes it.
    pub poll: Duration,
    /// What the runtime keeps per queue (concurrency slots, claim hints, wake-ups) is
    /// dropped once the queue has been idle this long.
    pub idle: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: Duration::from_secs(5),
            maintenance: Duration::from_millis(250),
            poll: Duration::from_millis(500),
            idle: Duration::from_secs(300),
        }
    }
}

impl Timing {
    /// The lease of a job run here: two heartbeat intervals. A heartbeat may come a whole
    /// interval late (a busy machine, a slow commit) before the lease lapses, whatever the
    /// interval; a crashed node's jobs are rescued within two intervals of its last
    /// heartbeat plus one rescue sweep ([`Timing::rescue_every`]).
    pub fn lease_ms(&self) -> i64 {
        (self.heartbeat.as_millis() as i64 * 2).max(100)
    }

    /// How often lapsed leases are looked for: a few times per heartbeat interval, between
    /// the maintenance tick and one second.
    pub fn rescue_every(&self) -> Duration {
        (self.heartbeat / 4).clamp(
            self.maintenance,
            Duration::from_secs(1).max(self.maintenance),
        )
    }
}

/// A queue's per-node concurrency: the configured limit, its semaphore, and how many jobs
/// this node holds (claimed, running or waiting for a slot).
#[derive(Clone)]
struct Slots {
    concurrency: i32,
    sem: Arc<Semaphore>,
    in_hand: Arc<std::sync::atomic::AtomicUsize>,
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
type SlotsSeen = (Slots, std::time::Instant);

/// The runtime of one node.
#[derive(Clone)]
pub struct Runtime {
    db: Db,
    wake: Wakeups,
    gather: Gatherer,
    handlers: Arc<HashMap<String, Arc<dyn Handler>>>,
    kinds: Arc<Vec<String>>,
    push: Pusher,
    node: String,
    timing: Timing,
    dispatch: bool,
    secrets: Arc<Mutex<HashMap<String, String>>>,
    /// Per queue, its slots and when a dispatcher pass last found it runnable.
    slots: Arc<Mutex<HashMap<(String, String), SlotsSeen>>>,
    running: Arc<Mutex<HashMap<String, Held>>>,
    known: Arc<Mutex<Known>>,
    /// Where the dispatcher's next read of runnable queues starts.
    rotation: Arc<Mutex<Rotation>>,
    limits: Limits,
    admission: QueueAdmission,
    outcomes: mpsc::UnboundedSender<Outcome>,
    outcomes_rx: Arc<Mutex<Option<mpsc::UnboundedReceiver<Outcome>>>>,
}

/// Builds a [`Runtime`].
pub struct RuntimeBuilder {
    handlers: HashMap<String, Arc<dyn Handler>>,
    timing: Timing,
    dispatch: bool,
    push_allow: PushAllow,
    limits: Limits,
}

impl Runtime {
    /// Starts describing a runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            handlers: HashMap::new(),
            timing: Timing::default(),
            dispatch: true,
            push_allow: PushAllow::default(),
            limits: Limits::default(),
        }
    }

    /// Where push jobs may be delivered (the API checks targets against it at enqueue).
    pub fn egress(&self) -> &Egress {
        self.push.egress()
    }

    /// Kinds with in-process handlers on this node.
    pub fn local_kinds(&self) -> &[String] {
        &self.kinds
    }

    /// In-process wake-ups (the API's long-polling claims wait on them).
    pub fn wakeups(&self) -> &Wakeups {
        &self.wake
    }

    /// Inserts jobs and commits (all or none; small enqueues arriving together share one
    /// commit, see [`Gatherer`]), then wakes this node's claimers of their queues. Queues
    /// that do not exist yet are created first, within the project's cap
    /// ([`QueueError::QueueLimit`]: nothing written).
    pub async fn enqueue(
        &self,
        project: &ProjectId,
        jobs: &[NewJob],
    ) -> Result<Vec<Enqueued>, QueueError> {
        let mut queues: Vec<&QueueName> = Vec::new();
        for j in jobs {
            if !queues.contains(&&j.queue) {
                queues.push(&j.queue);
            }
        }
        self.admission.admit(&self.db, project, &queues).await?;
        let out = self.gather.enqueue(project, jobs).await?;
        let mut woken: Vec<&QueueName> = Vec::new();
        for j in jobs {
            if !woken.contains(&&j.queue) {
                woken.push(&j.queue);
                self.wake.wake(project.as_str(), j.queue.as_str());
            }
        }
        Ok(out)
    }

    /// Shared commits for pull workers' claims, heartbeats, completions and failures (see
    /// [`Gatherer`]).
    pub fn gatherer(&self) -> &Gatherer {
        &self.gather
    }

    /// Lease and maintenance timing.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The per-project caps.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Creates queues within the per-project cap (see [`QueueAdmission`]).
    pub fn admission(&self) -> &QueueAdmission {
        &self.admission
    }

    /// How many queues the runtime keeps something for; what it keeps for a queue idle
    /// longer than [`Timing::idle`] is dropped.
    pub fn tracked(&self) -> Tracked {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner()).len();
        let known = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queues
            .len();
        let (notifiers, announced) = self.wake.tracked();
        Tracked {
            slots,
            notifiers,
            announced,
            settings: known,
        }
    }

    /// Signals the worker of a job cancelled through this node.
    pub fn signal_cancel(&self, job: &str) {
        if let Some(held) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(job)
        {
            let _ = held.cancel.send(true);
        }
    }

    /// The project's push-signing secret (created on first use, shared by all nodes).
    pub async fn push_secret(&self, project: &str) -> Result<String, sqlx::Error> {
        if let Some(s) = self
            .secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(project)
        {
            return Ok(s.clone());
        }
        let s = push_secret(&self.db, project).await?;
        self.secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(project.to_owned(), s.clone());
        Ok(s)
    }

    /// Runs dispatcher, completer and maintenance until `stop` turns true; then lets running
    /// jobs finish (up to 10 s) and commits their outcomes.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let rx = self
            .outcomes_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let completer = rx.map(|rx| tokio::spawn(complete_loop(self.db.clone(), rx)));
        let listener = match &self.db {
            // Behind a transaction pooler LISTEN cannot hold a server connection: poll only.
            Db::Postgres(pool, side) if !side.pooled() => {
                Some(tokio::spawn(self.wake.clone().listen(pool.clone())))
            }
            Db::Postgres(..) => None,
            Db::Sqlite { .. } => None,
        };
        let maintenance = tokio::spawn(self.clone().maintenance(stop.clone()));
        let cron = tokio::spawn(self.clone().cron(stop.clone()));
        let heartbeats = tokio::spawn(self.clone().heartbeats(stop.clone()));
        self.dispatch(stop).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (done_tx, done_rx) = oneshot::channel();
        if self.outcomes.send(Outcome::Drain(done_tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), done_rx).await;
        }
        maintenance.abort();
        cron.abort();
        heartbeats.abort();
        if let Some(l) = listener {
            l.abort();
        }
        if let Some(c) = completer {
            c.abort();
        }
    }

    async fn dispatch(&self, mut stop: watch::Receiver<bool>) {
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
            .insert(job.id.to_string(), held);
        let Ok(_permit) = slots.sem.clone().acquire_owned().await else {
            return;
        };
        let start = std::time::Instant::now();
        let outcome = self.run_attempt(&project, &job, cancel_rx.clone()).await;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(job.id.as_str());
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
                id: job.id.to_string(),
                token: lease_token,
                result,
                remove: slots
                    .remove_completed
                    .load(std::sync::atomic::Ordering::Relaxed),
            }),
            Err(error) => Outcome::Failed {
                project,
                id: job.id.to_string(),
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
                .push_secret(project.as_str())
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

    /// One loop for the whole node: every heartbeat interval, the leases of all held jobs are
    /// extended in set-based statements; a job whose lease could not be extended (cancelled,
    /// deleted, or re-leased elsewhere) is told to stop.
    async fn heartbeats(self, mut stop: watch::Receiver<bool>) {
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
            let mut by_project: HashMap<String, (ProjectId, Vec<(String, String)>)> =
                HashMap::new();
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

    async fn maintenance(self, mut stop: watch::Receiver<bool>) {
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
        if self.db.backend() == Backend::Sqlite {
            for (p, q) in &woken {
                self.wake.wake(p, q);
            }
        }
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
    async fn cron(self, mut stop: watch::Receiver<bool>) {
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
const SETTINGS_AT_MOST: Duration = Duration::from_millis(500);

/// Settings of queues the dispatcher read recently, with when it read them.
#[derive(Default)]
struct Known {
    /// [`Wakeups::settings_epoch`] when they were read.
    epoch: u64,
    queues: HashMap<(String, String), (store::Runnable, std::time::Instant)>,
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

/// The most queues one dispatcher read of the counters returns (taking turns across
/// projects, see [`store::runnable_queues`]).
const RUNNABLE_AT_MOST: i64 = 1_000;

/// How many queues the runtime keeps something for (see [`Runtime::tracked`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// Concurrency slots, claim hints and run-time averages.
    pub slots: usize,
    /// Wake-up notifiers (held by waiting claimers).
    pub notifiers: usize,
    /// Announcements of jobs not yet read by the dispatcher.
    pub announced: usize,
    /// Settings the dispatcher read recently.
    pub settings: usize,
}

/// The project's push-signing secret, created on first use.
pub async fn push_secret(db: &Db, project: &str) -> Result<String, sqlx::Error> {
    use sqlx::Row;
    let name = format!("push_secret/{project}");
    let mut tx = db.begin().await?;
    let value: String = on_db!(tx.ex(), c => {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(&name).bind(push::new_secret()).execute(&mut *c).await?;
        sqlx::query("SELECT value FROM settings WHERE name = $1").bind(&name).fetch_one(&mut *c).await?.try_get("value")?
    });
    tx.commit().await?;
    Ok(value)
}

impl RuntimeBuilder {
    /// Registers an in-process handler for `kind`.
    pub fn handler(mut self, kind: &str, h: impl Handler) -> Self {
        self.handlers.insert(kind.to_owned(), Arc::new(h));
        self
    }

    /// Overrides lease and maintenance timing.
    pub fn timing(mut self, t: Timing) -> Self {
        self.timing = t;
        self
    }

    /// Sets how often running jobs heartbeat (their lease is about twice that).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.timing.heartbeat = every;
        self
    }

    /// Whether this node runs jobs; maintenance and cron run either way.
    pub fn dispatch(mut self, on: bool) -> Self {
        self.dispatch = on;
        self
    }

    /// Non-public destinations push jobs may reach (default: public addresses only).
    pub fn push_allow(mut self, allow: PushAllow) -> Self {
        self.push_allow = allow;
        self
    }

    /// Sets the per-project caps (queues, schedules).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Finishes the runtime for `db`.
    pub fn build(self, db: Db) -> Runtime {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        let (outcomes, outcomes_rx) = mpsc::unbounded_channel();
        Runtime {
            gather: Gatherer::new(db.clone()),
            db,
            wake: Wakeups::default(),
            handlers: Arc::new(self.handlers),
            kinds: Arc::new(kinds),
            push: Pusher::new(Egress::new(self.push_allow)),
            node: format!("node-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]),
            timing: self.timing,
            dispatch: self.dispatch,
            secrets: Arc::default(),
            slots: Arc::default(),
            running: Arc::default(),
            known: Arc::default(),
            rotation: Arc::default(),
            admission: QueueAdmission::new(self.limits.queues),
            limits: self.limits,
            outcomes,
            outcomes_rx: Arc::new(Mutex::new(Some(outcomes_rx))),
        }
    }
}

/// Records finished attempts in batches: whatever arrives while one batch commits rides the
/// next commit, so a burst of completions costs one transaction, not one each.
async fn complete_loop(db: Db, mut rx: mpsc::UnboundedReceiver<Outcome>) {
    let mut batch: Vec<Outcome> = Vec::with_capacity(1024);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < 1000 {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let mut waiters = Vec::new();
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for o in batch.drain(..) {
            match o {
                Outcome::Done(c) => done.push(c),
                Outcome::Failed {
                    project,
                    id,
                    token,
                    error,
                } => failed.push((project, id, token, error)),
                Outcome::Drain(tx) => waiters.push(tx),
            }
        }
        for attempt in 1..=3 {
            match record_outcomes(&db, &done, &failed).await {
                Ok(()) => break,
                Err(e) if attempt < 3 => {
                    tracing::warn!(error = %e, "recording job outcomes failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => tracing::error!(error = %e, jobs = done.len() + failed.len(),
                    "could not record job outcomes; their leases will lapse and they will run again"),
            }
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

async fn record_outcomes(
    db: &Db,
    done: &[Completion],
    failed: &[(ProjectId, String, String, JobError)],
) -> Result<(), QueueError> {
    if done.is_empty() && failed.is_empty() {
        return Ok(());
    }
    if failed.is_empty() {
        for r in store::complete_now(db, done).await? {
            if let Err(e) = r {
                log_refused(&e);
            }
        }
        return Ok(());
    }
    let mut tx = db.begin().await?;
    for r in store::complete_many(&mut tx, done).await? {
        if let Err(e) = r {
            log_refused(&e);
        }
    }
    for (project, id, token, e) in failed {
        let opts = FailOptions {
            retry_after_ms: e.retry_after_ms,
            permanent: e.permanent,
        };
        match store::fail(&mut tx, project, id, token, &e.message, opts).await {
            Ok(_) => {}
            Err(QueueError::Db(e)) => return Err(QueueError::Db(e)),
            Err(other) => log_refused(&other),
        }
    }
    tx.commit().await?;
    Ok(())
}

fn log_refused(e: &QueueError) {
    match e {
        QueueError::StaleLease | QueueError::Cancelled | QueueError::NotFound(_) => {
            tracing::info!(error = %e, "job changed while running; outcome discarded")
        }
        other => tracing::error!(error = %other, "could not record job outcome"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heartbeat may be late by a whole interval before the lease lapses, at any interval
    /// (with the lease at two intervals less a maintenance tick, a 300 ms heartbeat had
    /// 50 ms to spare), and lapsed leases are still looked for a few times per interval.
    #[test]
    fn lease_slack_is_one_heartbeat_interval() {
        for ms in [200, 300, 1_000, 5_000, 60_000] {
            let t = Timing {
                heartbeat: Duration::from_millis(ms),
                ..Timing::default()
            };
            let slack = t.lease_ms() - ms as i64;
            assert!(slack >= ms as i64, "heartbeat {ms} ms: {slack} ms of slack");
            assert!(t.rescue_every() >= t.maintenance);
            assert!(t.rescue_every() <= Duration::from_secs(1));
        }
    }
}
