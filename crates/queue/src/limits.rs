//! Per-project caps on what a project can create, so that one tenant cannot grow the work
//! every node's dispatcher and cron tick do for all of them: queues (checked here, where
//! queues are created) and cron schedules (checked by [`crate::schedules::check_limits`]).

use crate::model::QueueName;
use crate::store::{self, Result};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use switchboard_core::db::{Db, Tx};
use switchboard_core::id::ProjectId;

/// Per-project caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most queues a project may have.
    pub queues: u32,
    /// Most cron schedules a project may have.
    pub schedules: u32,
    /// Most of a project's schedules that may fire more than once a minute.
    pub frequent_schedules: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queues: 1_000,
            schedules: 500,
            frequent_schedules: 20,
        }
    }
}

/// Queues this node has seen exist are remembered up to this many (then forgotten all at
/// once: the next enqueue into each costs one read again).
const KNOWN_AT_MOST: usize = 100_000;

/// Lets enqueues create queues up to the project's cap. The queues this node has seen exist
/// are remembered (queues are never removed), so enqueues into them check nothing; only an
/// enqueue naming a queue this node has not seen reads, and only one that creates a queue
/// takes the project's lock and counts (see [`store::create_queues`]).
#[derive(Clone)]
pub struct QueueAdmission {
    max: u32,
    known: Arc<Mutex<Known>>,
}

/// Queues seen to exist, per project (looked up without allocating).
#[derive(Default)]
struct Known {
    queues: HashMap<String, HashSet<String>>,
    count: usize,
}

impl QueueAdmission {
    /// Admission for projects of at most `max` queues each.
    pub fn new(max: u32) -> QueueAdmission {
        QueueAdmission {
            max,
            known: Arc::default(),
        }
    }

    /// The cap.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Those of `queues` this node has not seen exist.
    fn unknown<'a>(&self, project: &ProjectId, queues: &[&'a QueueName]) -> Vec<&'a QueueName> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let seen = known.queues.get(project.as_str());
        let mut out: Vec<&QueueName> = Vec::new();
        for q in queues {
            if !out.contains(q) && !seen.is_some_and(|s| s.contains(q.as_str())) {
                out.push(q);
            }
        }
        out
    }

    fn remember<'a>(&self, project: &ProjectId, queues: impl IntoIterator<Item = &'a str>) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.count >= KNOWN_AT_MOST {
            *known = Known::default();
        }
        let mut added = 0;
        let seen = known.queues.entry(project.to_string()).or_default();
        for q in queues {
            if seen.insert(q.to_owned()) {
                added += 1;
            }
        }
        known.count += added;
    }

    /// Makes sure `queues` exist, creating the missing ones in a transaction of its own
    /// unless the project would then have more than its cap
    /// ([`store::QueueError::QueueLimit`], nothing created). Costs nothing when this node
    /// has seen them all.
    pub async fn admit(&self, db: &Db, project: &ProjectId, queues: &[&QueueName]) -> Result<()> {
        let unknown = self.unknown(project, queues);
        if unknown.is_empty() {
            return Ok(());
        }
        let mut tx = db.begin().await?;
        store::create_queues(&mut tx, project, &unknown, self.max).await?;
        tx.commit().await?;
        self.remember(project, unknown.iter().map(|q| q.as_str()));
        Ok(())
    }

    /// [`QueueAdmission::admit`] inside `tx`: queues it creates are remembered only the next
    /// time they are seen (the transaction may yet roll back).
    pub async fn admit_in(
        &self,
        tx: &mut Tx,
        project: &ProjectId,
        queues: &[&QueueName],
    ) -> Result<()> {
        let unknown = self.unknown(project, queues);
        if unknown.is_empty() {
            return Ok(());
        }
        let existed = store::create_queues(tx, project, &unknown, self.max).await?;
        self.remember(project, existed.iter().map(String::as_str));
        Ok(())
    }
}
