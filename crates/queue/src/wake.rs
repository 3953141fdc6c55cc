//! Wake-ups for waiting claimers: in-process per queue, and across nodes through PostgreSQL
//! LISTEN/NOTIFY (one payload per queue per committed transaction, not per job, sent after
//! the commit by the database handle's notifier). Waiters also poll, so a lost notification
//! (or a pooler that drops LISTEN) costs latency, never jobs.

use crate::store::ClaimKey;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The NOTIFY channel.
pub const CHANNEL: &str = "switchboard_jobs";

/// Per-(project, queue) notifiers.
#[derive(Clone, Default)]
pub struct Wakeups {
    inner: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    /// Per queue, the earliest job (in claim order) announced since the runtime last
    /// looked; `None` when an announcement named no job (anything may have become available).
    earliest: Arc<Mutex<HashMap<String, Option<ClaimKey>>>>,
    /// Bumped each time LISTEN starts (again): notifications sent while no LISTEN was
    /// active are lost, so what was learnt from them before is incomplete.
    epoch: Arc<std::sync::atomic::AtomicU64>,
    /// What woke the dispatcher since it last looked (see [`Wakeups::take_woken`]).
    woken: Arc<Mutex<Woken>>,
    /// Bumped when this node changes a queue's settings.
    settings: Arc<std::sync::atomic::AtomicU64>,
}

/// What woke the node's dispatcher since it last looked.
#[derive(Debug, Default)]
pub struct Woken {
    /// Something that named no queue (maintenance, a new LISTEN): every queue may have work.
    pub any: bool,
    /// Queues named by their wake-ups, as `(project, queue)`.
    pub queues: HashSet<(String, String)>,
}

fn key(project: &str, queue: &str) -> String {
    format!("{project}/{queue}")
}

impl Wakeups {
    /// The notifier for a queue.
    pub fn get(&self, project: &str, queue: &str) -> Arc<Notify> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key(project, queue)).or_default().clone()
    }

    /// Wakes every waiter of a queue, and the node's dispatcher (`*`/`*`).
    pub fn wake(&self, project: &str, queue: &str) {
        if let Some(n) = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key(project, queue))
        {
            n.notify_waiters();
        }
        self.wake_dispatcher(Some((project, queue)));
    }

    /// Wakes the node's dispatcher for one queue, or (`None`) for any queue.
    pub fn wake_dispatcher(&self, queue: Option<(&str, &str)>) {
        {
            let mut w = self.woken.lock().unwrap_or_else(|p| p.into_inner());
            match queue {
                Some((p, q)) => {
                    w.queues.insert((p.to_owned(), q.to_owned()));
                }
                None => w.any = true,
            }
        }
        self.get("*", "*").notify_one();
    }

    /// Takes what woke the dispatcher since the last call.
    pub fn take_woken(&self) -> Woken {
        std::mem::take(&mut *self.woken.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records that this node changed a queue's settings (a pause, a new limit): dispatchers
    /// stop relying on the settings they read before, and the queue's waiters wake.
    pub fn settings_changed(&self, project: &str, queue: &str) {
        self.settings
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.wake(project, queue);
    }

    /// How many settings changes [`Wakeups::settings_changed`] has recorded.
    pub fn settings_epoch(&self) -> u64 {
        self.settings.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Wakes from a NOTIFY payload `project/queue[/priority/run_at/id]`.
    pub fn wake_payload(&self, payload: &str) {
        let mut parts = payload.splitn(5, '/');
        let (Some(p), Some(q)) = (parts.next(), parts.next()) else {
            return;
        };
        let first = match (parts.next(), parts.next(), parts.next()) {
            (Some(prio), Some(at), Some(id)) => match (prio.parse(), at.parse()) {
                (Ok(priority), Ok(run_at)) => Some(ClaimKey {
                    priority,
                    run_at,
                    id: id.to_owned(),
                }),
                _ => None,
            },
            _ => None,
        };
        self.announce(p, q, first);
        self.wake(p, q);
    }

    /// Records that jobs of a queue became available, the earliest at `first` in claim
    /// order (`None`: unknown).
    pub fn announce(&self, project: &str, queue: &str, first: Option<ClaimKey>) {
        let mut map = self.earliest.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&key(project, queue)) {
            None => {
                map.insert(key(project, queue), first);
            }
            Some(slot) => {
                *slot = match (slot.take(), first) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    _ => None,
                }
            }
        }
    }

    /// How many times LISTEN has started; a change means notifications may have been missed.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Takes what [`Wakeups::announce`] recorded for a queue since the last call:
    /// `None` if nothing was announced, `Some(None)` if an unknown job was.
    pub fn take_announced(&self, project: &str, queue: &str) -> Option<Option<ClaimKey>> {
        self.earliest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(project, queue))
    }

    /// Drops the notifiers no one waits on (a waiter holds its notifier; waking a queue
    /// without one wakes no one anyway) and the announcements of queues `keep` does not
    /// name: what per-queue state would otherwise pile up for every queue ever woken.
    pub fn forget(&self, keep: impl Fn(&str, &str) -> bool) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, n| Arc::strong_count(n) > 1);
        self.earliest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| match k.split_once('/') {
                Some((p, q)) => keep(p, q),
                None => false,
            });
    }

    /// How many notifiers and announcements are kept (see [`Wakeups::forget`]).
    pub fn tracked(&self) -> (usize, usize) {
        let notifiers = self.inner.lock().unwrap_or_else(|p| p.into_inner()).len();
        let announced = self
            .earliest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        (notifiers, announced)
    }

    /// What [`Wakeups::take_announced`] would take for a queue, left in place.
    pub fn announced(&self, project: &str, queue: &str) -> Option<Option<ClaimKey>> {
        self.earliest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key(project, queue))
            .cloned()
    }

    /// Listens for NOTIFY on PostgreSQL until the task is dropped; reconnects by itself.
    pub async fn listen(self, pool: sqlx::PgPool) {
        loop {
            match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(CHANNEL).await {
                        tracing::warn!(error = %e, "LISTEN failed; retrying");
                    } else {
                        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        self.wake_dispatcher(None);
                        loop {
                            match listener.recv().await {
                                Ok(n) => self.wake_payload(n.payload()),
                                Err(e) => {
                                    tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot LISTEN; retrying"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Hints;

    fn key(priority: i32, run_at: i64, id: &str) -> ClaimKey {
        ClaimKey {
            priority,
            run_at,
            id: id.into(),
        }
    }

    #[test]
    fn announcements_keep_the_earliest_job_or_unknown() {
        let w = Wakeups::default();
        w.wake_payload("proj_a/emails/2/100/job_b");
        w.wake_payload("proj_a/emails/0/900/job_c");
        w.wake_payload("proj_a/emails/2/50/job_a");
        assert_eq!(
            w.take_announced("proj_a", "emails"),
            Some(Some(key(0, 900, "job_c")))
        );
        assert_eq!(w.take_announced("proj_a", "emails"), None);
        // A payload without a job (or a malformed one) means "anything may be new".
        w.wake_payload("proj_a/emails/1/10/job_x");
        w.wake_payload("proj_a/emails");
        w.wake_payload("proj_a/emails/1/10/job_y");
        assert_eq!(w.take_announced("proj_a", "emails"), Some(None));
        w.wake_payload("proj_a/sms/x/10/job_z");
        assert_eq!(w.take_announced("proj_a", "sms"), Some(None));
        assert_eq!(w.take_announced("proj_a", "push"), None);
    }

    #[test]
    fn hints_move_back_to_an_earlier_announced_job_only() {
        let mut h = Hints {
            local: Some(key(2, 500, "job_m")),
            push: None,
        };
        // A later job changes nothing: claims reach it reading on.
        assert!(!h.rewind(Some(&key(2, 900, "job_z"))));
        assert_eq!(h.local, Some(key(2, 500, "job_m")));
        // An earlier one becomes where claims start (inclusive); no hint stays no hint.
        assert!(h.rewind(Some(&key(0, 900, "job_c"))));
        assert_eq!(h.local, Some(key(0, 900, "job_c")));
        assert_eq!(h.push, None);
        // Unknown: from the top.
        assert!(h.rewind(None));
        assert_eq!(h.local, None);
    }
}
