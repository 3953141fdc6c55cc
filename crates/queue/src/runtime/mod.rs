//! The node's runtime: runs push jobs and jobs of in-process handlers with per-queue
//! concurrency, heartbeats their leases, honours cancellation, and runs maintenance
//! (promotion of due jobs, rescue of lapsed leases, cron ticks, retention pruning).
//!
//! What a handler sees and answers is in [`crate::handler`] (re-exported here); this module
//! is the dispatching: `dispatch` (claiming and running jobs), `chores` (heartbeats,
//! maintenance, cron) and `complete` (recording outcomes in batches).

mod chores;
mod complete;
mod dispatch;

pub use crate::handler::{BuiltinKind, Handler, HandlerFuture, JobContext, JobError, Services};

use crate::egress::Egress;
use crate::gather::Gatherer;
use crate::limits::{Limits, QueueAdmission};
use crate::model::*;
use crate::push::Pusher;
use crate::store::{self, Enqueued, QueueError, Rotation};
use crate::wake::{Wakeups, CHANNEL};
use complete::{complete_loop, Outcome};
use dispatch::{Known, SlotsSeen};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_core::config::PushAllow;
use switchboard_core::db::{Db, LocalListener};
use switchboard_core::id::ProjectId;
use tokio::sync::{mpsc, oneshot, watch};

/// A job this node holds, whose lease the heartbeat loop extends.
struct Held {
    project: ProjectId,
    token: String,
    cancel: watch::Sender<bool>,
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

/// The runtime of one node.
#[derive(Clone)]
pub struct Runtime {
    db: Db,
    wake: Wakeups,
    gather: Gatherer,
    handlers: Arc<HashMap<String, Arc<dyn Handler>>>,
    kinds: Arc<Vec<String>>,
    push: Pusher,
    services: Services,
    /// On SQLite, wakes this node's waiters when a transaction with wake-ups commits (see
    /// [`Db::listen_local`]); held here so it listens as long as the runtime lives.
    _local: Option<Arc<LocalListener>>,
    node: String,
    timing: Timing,
    dispatch: bool,
    secrets: Arc<Mutex<HashMap<String, String>>>,
    /// Per queue, its slots and when a dispatcher pass last found it runnable.
    slots: Arc<Mutex<HashMap<(String, String), SlotsSeen>>>,
    running: Arc<Mutex<HashMap<JobId, Held>>>,
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
    services: Option<Services>,
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
            services: None,
            limits: Limits::default(),
        }
    }

    /// What this node's handlers share (see [`JobContext::services`]).
    pub fn services(&self) -> &Services {
        &self.services
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

    /// Enqueues outside a transaction: inserts jobs and commits (all or none; small
    /// enqueues arriving together share one commit, see [`Gatherer`]), then wakes this
    /// node's claimers of their queues. Queues that do not exist yet are created first,
    /// within the project's cap ([`QueueError::QueueLimit`]: nothing written); Switchboard's
    /// own queues (`sb.…`) are created as needed and not held to it. Inside a transaction
    /// of the caller's, enqueue with [`crate::service::enqueue_in`].
    pub async fn enqueue(
        &self,
        project: &ProjectId,
        jobs: &[NewJob],
    ) -> Result<Vec<Enqueued>, QueueError> {
        let mut queues: Vec<&QueueName> = Vec::new();
        for j in jobs {
            j.check_reserved()?;
            if !queues.contains(&&j.queue) && !j.queue.is_reserved() {
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
    pub fn signal_cancel(&self, job: &JobId) {
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
    pub async fn push_secret(&self, project: &ProjectId) -> Result<String, sqlx::Error> {
        if let Some(s) = self
            .secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(project.as_str())
        {
            return Ok(s.clone());
        }
        let s = store::push_secret(&self.db, project).await?;
        self.secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(project.to_string(), s.clone());
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
}

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

impl RuntimeBuilder {
    /// Registers an in-process handler for `kind`.
    pub fn handler(mut self, kind: &str, h: impl Handler) -> Self {
        self.handlers.insert(kind.to_owned(), Arc::new(h));
        self
    }

    /// Registers the handler of one of Switchboard's built-in kinds (named `sb.…`; see
    /// `crates/server/src/builtins.rs`, where every built-in kind is registered).
    pub fn builtin(self, kind: BuiltinKind, h: impl Handler) -> Self {
        self.handler(kind.kind(), h)
    }

    /// What handlers share (default: services following [`RuntimeBuilder::push_allow`]);
    /// push deliveries follow the egress policy of these services.
    pub fn services(mut self, services: Services) -> Self {
        self.services = Some(services);
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

    /// Non-public destinations push jobs and handlers' HTTP client may reach (default: public
    /// addresses only), unless [`RuntimeBuilder::services`] gives the services.
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
        let services = self
            .services
            .unwrap_or_else(|| Services::new(Egress::new(self.push_allow)));
        let wake = Wakeups::default();
        let local: Arc<LocalListener> = {
            let wake = wake.clone();
            Arc::new(move |channel: &str, payload: &str| {
                if channel == CHANNEL {
                    wake.wake_payload(payload);
                }
            })
        };
        Runtime {
            gather: Gatherer::new(db.clone()),
            _local: db.listen_local(&local).then_some(local),
            db,
            wake,
            handlers: Arc::new(self.handlers),
            kinds: Arc::new(kinds),
            push: Pusher::new(services.egress().clone()),
            services,
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
