//! Group commit for small enqueues.
//!
//! Application servers enqueue one job per request, from many requests at once. Committed
//! one by one, each costs a transaction and a WAL flush: on SQLite every commit waits for its
//! own fsync behind the single writer, on PostgreSQL concurrent commits contend for the WAL
//! write lock. The [`Gatherer`] sends small enqueues to one task that inserts whatever has
//! arrived while the previous insert was committing as a single statement and commit. An
//! enqueue arriving when nothing is committing goes in at once, so a quiet node pays one
//! channel hop, and a busy one pays one commit per batch instead of one per job.

use std::sync::{Arc, OnceLock};

use switchboard_core::db::Db;
use switchboard_core::id::ProjectId;
use tokio::sync::{mpsc, oneshot};

use crate::model::NewJob;
use crate::store::{self, Enqueued, QueueError, Result};

/// Enqueues of at most this many jobs are gathered; larger ones already amortise their
/// commit and go in on their own.
pub const GATHER_MAX_JOBS: usize = 100;

/// Most jobs one gathered commit carries.
const COMMIT_MAX_JOBS: usize = 1000;

/// One caller's enqueue waiting for the next commit.
struct Request {
    project: ProjectId,
    jobs: Vec<NewJob>,
    reply: oneshot::Sender<Result<Vec<Enqueued>>>,
}

/// Gathers concurrent small enqueues into shared commits (see the module docs).
#[derive(Clone)]
pub struct Gatherer {
    db: Db,
    sender: Arc<OnceLock<mpsc::UnboundedSender<Request>>>,
}

impl Gatherer {
    /// A gatherer for `db`; its task starts with the first gathered enqueue.
    pub fn new(db: Db) -> Gatherer {
        Gatherer {
            db,
            sender: Arc::default(),
        }
    }

    /// Inserts `jobs` and commits, as [`store::enqueue_now`] does: all or none, in order,
    /// committed when this returns. Jobs with unique keys and enqueues of more than
    /// [`GATHER_MAX_JOBS`] go in on their own.
    pub async fn enqueue(&self, project: &ProjectId, jobs: &[NewJob]) -> Result<Vec<Enqueued>> {
        if jobs.len() > GATHER_MAX_JOBS || jobs.iter().any(|j| j.unique.is_some()) {
            return store::enqueue_now(&self.db, project, jobs).await;
        }
        let sender = self.sender.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(gather_loop(self.db.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let request = Request {
            project: project.clone(),
            jobs: jobs.to_vec(),
            reply,
        };
        if let Err(mpsc::error::SendError(r)) = sender.send(request) {
            return store::enqueue_now(&self.db, project, &r.jobs).await;
        }
        // The task answers every request it takes; a dropped reply means it died mid-commit,
        // and whether the jobs went in is unknown.
        answer
            .await
            .unwrap_or(Err(QueueError::Db(sqlx::Error::WorkerCrashed)))
    }
}

/// Takes the first waiting request and every one behind it (up to [`COMMIT_MAX_JOBS`] jobs)
/// and commits them together; what arrives meanwhile waits for the next round. (Two or four
/// commits at once measured no better at a given load on PostgreSQL and gather less.)
async fn gather_loop(db: Db, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut batch: Vec<Request> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut jobs = first.jobs.len();
        batch.push(first);
        while jobs < COMMIT_MAX_JOBS {
            match rx.try_recv() {
                Ok(r) => {
                    jobs += r.jobs.len();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        while !batch.is_empty() {
            // One project's requests per commit (a commit inserts for one project).
            let project = batch[0].project.clone();
            let (mine, rest): (Vec<Request>, Vec<Request>) =
                batch.drain(..).partition(|r| r.project == project);
            batch = rest;
            commit(&db, &project, mine).await;
        }
    }
}

/// Inserts the requests' jobs in one commit and answers each with its own jobs. If the shared
/// commit fails, each request is tried on its own, so one caller's failure is only its own.
async fn commit(db: &Db, project: &ProjectId, requests: Vec<Request>) {
    if requests.len() > 1 {
        let all: Vec<NewJob> = requests.iter().flat_map(|r| r.jobs.clone()).collect();
        match store::enqueue_now(db, project, &all).await {
            Ok(out) => {
                let mut out = out.into_iter();
                for r in requests {
                    let mine: Vec<Enqueued> = out.by_ref().take(r.jobs.len()).collect();
                    let _ = r.reply.send(Ok(mine));
                }
                return;
            }
            Err(e) => tracing::debug!(error = %e, requests = requests.len(),
                "gathered enqueue failed; enqueueing one by one"),
        }
    }
    for r in requests {
        let out = store::enqueue_now(db, project, &r.jobs).await;
        let _ = r.reply.send(out);
    }
}
