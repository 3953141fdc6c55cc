//! Group commit for the small writes that arrive one per request.
//!
//! Application servers enqueue one job per request, and pull workers claim, heartbeat and
//! complete (or fail) a job or a few per request, from many requests at once. Committed one by one, each costs a transaction and a
//! WAL flush: on SQLite every commit waits for its own fsync behind the single writer, on
//! PostgreSQL concurrent commits contend for the WAL write lock. The [`Gatherer`] sends such
//! writes to one task per kind that commits whatever has arrived while its previous commit was
//! under way as a single transaction. A write arriving when nothing is committing goes in at
//! once, so a quiet node pays one channel hop, and a busy one pays one commit per batch
//! instead of one per request. If a shared commit fails, each request is tried on its own, so
//! one caller's failure is only its own.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use switchboard_core::db::{Db, Tx};
use switchboard_core::id::ProjectId;
use switchboard_core::time::Timestamp;
use tokio::sync::{mpsc, oneshot};

use crate::model::{
    check_result_size, ClaimedJob, Invalid, Job, JobId, NewJob, QueueName, RESERVED_MESSAGE,
};
use crate::store::{self, Enqueued, QueueError, Result};

/// Enqueues of at most this many jobs are gathered; larger ones already amortise their
/// commit and go in on their own.
pub const GATHER_MAX_JOBS: usize = 100;

/// Most jobs one gathered commit carries.
const COMMIT_MAX_JOBS: usize = 1000;

/// A kind of write whose requests can share a commit.
trait Work: Send + Sync + 'static {
    /// One caller's request.
    type Item: Send + Sync + 'static;
    /// Its answer.
    type Out: Send + 'static;
    /// Jobs in a request (a commit carries at most [`COMMIT_MAX_JOBS`]).
    fn weight(_: &Self::Item) -> usize {
        1
    }
    /// Requests of different groups never share a commit.
    fn group(_: &Self::Item) -> &str {
        ""
    }
    /// The requests (one group) in one commit: each one's answer, or an error if nothing
    /// was committed.
    fn together(
        db: &Db,
        items: &[&Self::Item],
    ) -> impl Future<Output = Result<Vec<Result<Self::Out>>>> + Send;
    /// One request in a commit of its own.
    fn alone(db: &Db, item: &Self::Item) -> impl Future<Output = Result<Self::Out>> + Send;
}

/// A kind of write whose requests run one after another in a transaction.
trait EachInTx: Send + Sync + 'static {
    /// One caller's request.
    type Item: Send + Sync + 'static;
    /// Its answer.
    type Out: Send + 'static;
    /// One request in `tx`: its answer, or its refusal (which wrote nothing), or a database
    /// error (see [`store::answer`]).
    fn run<'a>(
        tx: &'a mut Tx,
        item: &'a Self::Item,
    ) -> impl Future<Output = Result<Self::Out>> + Send + 'a;
}

/// The [`Work`] of an [`EachInTx`] kind that needs nothing else.
struct Each<K>(std::marker::PhantomData<K>);

impl<K: EachInTx> Work for Each<K> {
    type Item = K::Item;
    type Out = K::Out;

    async fn together(db: &Db, items: &[&K::Item]) -> Result<Vec<Result<K::Out>>> {
        each_in_tx::<K>(db, items).await
    }

    async fn alone(db: &Db, item: &K::Item) -> Result<K::Out> {
        in_own_tx::<K>(db, item).await
    }
}

/// [`Work::together`] for an [`EachInTx`] kind: each request in turn, in one transaction.
async fn each_in_tx<W: EachInTx>(db: &Db, items: &[&W::Item]) -> Result<Vec<Result<W::Out>>> {
    let mut tx = db.begin().await?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(store::answer(W::run(&mut tx, item).await)?);
    }
    tx.commit().await?;
    Ok(out)
}

/// [`Work::alone`] for an [`EachInTx`] kind: the request in a transaction of its own.
async fn in_own_tx<W: EachInTx>(db: &Db, item: &W::Item) -> Result<W::Out> {
    let mut tx = db.begin().await?;
    let out = W::run(&mut tx, item).await?;
    tx.commit().await?;
    Ok(out)
}

/// A request waiting for the next commit.
struct Waiting<W: Work> {
    item: W::Item,
    reply: oneshot::Sender<Result<W::Out>>,
}

/// One kind of write's task, started with its first request.
struct Lane<W: Work>(Arc<OnceLock<mpsc::UnboundedSender<Waiting<W>>>>);

impl<W: Work> Clone for Lane<W> {
    fn clone(&self) -> Self {
        Lane(self.0.clone())
    }
}

impl<W: Work> Default for Lane<W> {
    fn default() -> Self {
        Lane(Arc::default())
    }
}

impl<W: Work> Lane<W> {
    /// Commits `item` with whatever else arrives meanwhile; answers once it is committed.
    async fn submit(&self, db: &Db, item: W::Item) -> Result<W::Out> {
        let sender = self.0.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(rounds::<W>(db.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(w)) = sender.send(Waiting { item, reply }) {
            return W::alone(db, &w.item).await;
        }
        // The task answers every request it takes; a dropped reply means it died mid-commit,
        // and whether the write went in is unknown.
        answer
            .await
            .unwrap_or(Err(QueueError::Db(sqlx::Error::WorkerCrashed)))
    }
}

/// Takes the first waiting request and every one behind it (up to [`COMMIT_MAX_JOBS`] jobs)
/// and commits them together, a group at a time; what arrives meanwhile waits for the next
/// round. (Two or four commits at once measured no better at a given load on PostgreSQL and
/// gathered less.)
async fn rounds<W: Work>(db: Db, mut rx: mpsc::UnboundedReceiver<Waiting<W>>) {
    let mut batch: Vec<Waiting<W>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut jobs = W::weight(&first.item);
        batch.push(first);
        while jobs < COMMIT_MAX_JOBS {
            match rx.try_recv() {
                Ok(w) => {
                    jobs += W::weight(&w.item);
                    batch.push(w);
                }
                Err(_) => break,
            }
        }
        while !batch.is_empty() {
            let group = W::group(&batch[0].item).to_owned();
            let (mine, rest): (Vec<Waiting<W>>, Vec<Waiting<W>>) =
                batch.drain(..).partition(|w| W::group(&w.item) == group);
            batch = rest;
            commit::<W>(&db, mine).await;
        }
    }
}

/// Commits the requests together and answers each; if that fails, each on its own.
async fn commit<W: Work>(db: &Db, waiting: Vec<Waiting<W>>) {
    if waiting.len() > 1 {
        let items: Vec<&W::Item> = waiting.iter().map(|w| &w.item).collect();
        match W::together(db, &items).await {
            Ok(outs) => {
                for (w, out) in waiting.into_iter().zip(outs) {
                    let _ = w.reply.send(out);
                }
                return;
            }
            Err(e) => tracing::debug!(error = %e, requests = waiting.len(),
                "shared commit failed; committing one by one"),
        }
    }
    for w in waiting {
        let out = W::alone(db, &w.item).await;
        let _ = w.reply.send(out);
    }
}

/// Small enqueues: the group's jobs (one project's) in one statement.
struct Enqueues;

impl Work for Enqueues {
    type Item = (ProjectId, Vec<NewJob>);
    type Out = Vec<Enqueued>;

    fn weight((_, jobs): &Self::Item) -> usize {
        jobs.len()
    }

    fn group((project, _): &Self::Item) -> &str {
        project.as_str()
    }

    async fn together(db: &Db, items: &[&Self::Item]) -> Result<Vec<Result<Vec<Enqueued>>>> {
        let Some((project, _)) = items.first() else {
            return Ok(Vec::new());
        };
        let all: Vec<NewJob> = items.iter().flat_map(|(_, jobs)| jobs.clone()).collect();
        let mut out = store::enqueue_now(db, project, &all).await?.into_iter();
        Ok(items
            .iter()
            .map(|(_, jobs)| Ok(out.by_ref().take(jobs.len()).collect()))
            .collect())
    }

    async fn alone(db: &Db, (project, jobs): &Self::Item) -> Result<Vec<Enqueued>> {
        store::enqueue_now(db, project, jobs).await
    }
}

/// Completions of single jobs (pull workers' `POST /v1/jobs/{id}/complete`).
struct Completions;

impl Work for Completions {
    /// Project, job id, lease token, result.
    type Item = (ProjectId, JobId, String, Option<serde_json::Value>);
    type Out = Job;

    async fn together(db: &Db, items: &[&Self::Item]) -> Result<Vec<Result<Job>>> {
        let each: Vec<store::Completing<'_>> = items
            .iter()
            .map(|(project, id, token, result)| (project, id, token.as_str(), result.as_ref()))
            .collect();
        let mut tx = db.begin().await?;
        let out = store::complete_each(&mut tx, &each).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn alone(db: &Db, item: &Self::Item) -> Result<Job> {
        in_own_tx::<Self>(db, item).await
    }
}

impl EachInTx for Completions {
    type Item = <Self as Work>::Item;
    type Out = Job;

    fn run<'a>(
        tx: &'a mut Tx,
        (project, id, token, result): &'a Self::Item,
    ) -> impl Future<Output = Result<Job>> + Send + 'a {
        store::complete(tx, project, id, token, result.as_ref())
    }
}

/// Pull workers' claims (`POST /v1/queues/{queue}/claim`).
struct Claims;

/// A pull worker's claim: project, queue, worker, most jobs, lease ms.
type PullClaim = (ProjectId, QueueName, String, i64, i64);

fn pull_claim((project, queue, worker, max, lease_ms): &PullClaim) -> store::Claim<'_> {
    store::Claim {
        project,
        queue,
        who: store::ClaimFor::Pull,
        worker,
        max: *max,
        lease_ms: *lease_ms,
    }
}

impl Work for Claims {
    type Item = PullClaim;
    type Out = Vec<ClaimedJob>;

    fn weight(item: &Self::Item) -> usize {
        item.3.max(1) as usize
    }

    async fn together(db: &Db, items: &[&Self::Item]) -> Result<Vec<Result<Vec<ClaimedJob>>>> {
        // Each claim sees the jobs the ones before it took as running.
        each_in_tx::<Self>(db, items).await
    }

    async fn alone(db: &Db, item: &Self::Item) -> Result<Vec<ClaimedJob>> {
        // Settings unknown here: the pause, caps and rate limit are checked in a transaction.
        store::claim_now(db, &pull_claim(item), false).await
    }
}

impl EachInTx for Claims {
    type Item = PullClaim;
    type Out = Vec<ClaimedJob>;

    async fn run(tx: &mut Tx, item: &Self::Item) -> Result<Vec<ClaimedJob>> {
        store::claim(tx, &pull_claim(item)).await
    }
}

/// Pull workers' lease extensions (`POST /v1/jobs/{id}/heartbeat`).
struct Heartbeats;

impl EachInTx for Heartbeats {
    /// Project, job id, lease token, lease ms (none: the job's own), progress.
    type Item = (
        ProjectId,
        JobId,
        String,
        Option<i64>,
        Option<serde_json::Value>,
    );
    type Out = Timestamp;

    fn run<'a>(
        tx: &'a mut Tx,
        (project, id, token, lease_ms, progress): &'a Self::Item,
    ) -> impl Future<Output = Result<Timestamp>> + Send + 'a {
        store::heartbeat(tx, project, id, token, *lease_ms, progress.as_ref())
    }
}

/// Pull workers' failed attempts (`POST /v1/jobs/{id}/fail`).
struct Failures;

impl EachInTx for Failures {
    /// Project, job id, lease token, error, how to treat it.
    type Item = (ProjectId, JobId, String, String, store::FailOptions);
    type Out = Job;

    fn run<'a>(
        tx: &'a mut Tx,
        (project, id, token, error, opts): &'a Self::Item,
    ) -> impl Future<Output = Result<Job>> + Send + 'a {
        store::fail(tx, project, id, token, error, *opts)
    }
}

/// Gathers concurrent small writes into shared commits (see the module docs).
#[derive(Clone)]
pub struct Gatherer {
    db: Db,
    enqueues: Lane<Enqueues>,
    claims: Lane<Claims>,
    heartbeats: Lane<Each<Heartbeats>>,
    completions: Lane<Completions>,
    failures: Lane<Each<Failures>>,
}

impl Gatherer {
    /// A gatherer for `db`; its tasks start with their first requests.
    pub fn new(db: Db) -> Gatherer {
        Gatherer {
            db,
            enqueues: Lane::default(),
            claims: Lane::default(),
            heartbeats: Lane::default(),
            completions: Lane::default(),
            failures: Lane::default(),
        }
    }

    /// Inserts `jobs` and commits, as [`store::enqueue_now`] does: all or none, in order,
    /// committed when this returns. Jobs with unique keys and enqueues of more than
    /// [`GATHER_MAX_JOBS`] go in on their own. The engine of
    /// [`crate::runtime::Runtime::enqueue`], which checks and wakes around it: callers use
    /// that.
    pub(crate) async fn enqueue(
        &self,
        project: &ProjectId,
        jobs: &[NewJob],
    ) -> Result<Vec<Enqueued>> {
        if jobs.len() > GATHER_MAX_JOBS || jobs.iter().any(|j| j.unique.is_some()) {
            return store::enqueue_now(&self.db, project, jobs).await;
        }
        self.enqueues
            .submit(&self.db, (project.clone(), jobs.to_vec()))
            .await
    }

    /// Claims up to `max` jobs of a queue for a pull worker, as [`store::claim`] does (within
    /// the queue's pause, caps and rate limit), and commits. Switchboard's own queues
    /// (`sb.…`) are refused: only in-process handlers run their jobs.
    pub async fn claim_pull(
        &self,
        project: &ProjectId,
        queue: &QueueName,
        worker: &str,
        max: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedJob>> {
        if queue.is_reserved() {
            return Err(Invalid::new("queue", RESERVED_MESSAGE).into());
        }
        let item = (
            project.clone(),
            queue.clone(),
            worker.to_owned(),
            max,
            lease_ms,
        );
        self.claims.submit(&self.db, item).await
    }

    /// Extends a running job's lease by `lease_ms` from now, or without it by the length the
    /// job was claimed with (recording `progress` if given) as [`store::heartbeat`] does,
    /// refusing stale tokens and cancelled jobs, and commits; returns the new end of the
    /// lease.
    pub async fn heartbeat(
        &self,
        project: &ProjectId,
        id: &JobId,
        token: &str,
        lease_ms: Option<i64>,
        progress: Option<serde_json::Value>,
    ) -> Result<Timestamp> {
        check_result_size("progress", progress.as_ref()).map_err(QueueError::from)?;
        let item = (
            project.clone(),
            id.clone(),
            token.to_owned(),
            lease_ms,
            progress,
        );
        self.heartbeats.submit(&self.db, item).await
    }

    /// Completes a running job as [`store::complete`] does (refusing stale tokens) and
    /// commits; returns the completed job.
    pub async fn complete(
        &self,
        project: &ProjectId,
        id: &JobId,
        token: &str,
        result: Option<serde_json::Value>,
    ) -> Result<Job> {
        check_result_size("result", result.as_ref()).map_err(QueueError::from)?;
        let item = (project.clone(), id.clone(), token.to_owned(), result);
        self.completions.submit(&self.db, item).await
    }

    /// Records a running job's failed attempt as [`store::fail`] does (retryable with
    /// backoff while attempts remain, refusing stale tokens) and commits; returns the job.
    pub async fn fail(
        &self,
        project: &ProjectId,
        id: &JobId,
        token: &str,
        error: &str,
        opts: store::FailOptions,
    ) -> Result<Job> {
        let item = (
            project.clone(),
            id.clone(),
            token.to_owned(),
            error.to_owned(),
            opts,
        );
        self.failures.submit(&self.db, item).await
    }
}
