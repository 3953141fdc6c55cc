//! The one place per-queue metric labels come from: at most a configured number of distinct
//! (project, queue) pairs per node get labels of their own, the rest share
//! `project="_other", queue="_other"`. Tenants create queues at will; without a bound every
//! new one would add series to the node's metrics forever.
//!
//! A pair not used for [`IDLE`] gives its place up (the Prometheus exporter forgets series
//! idle for as long, so the label sets of queues that are gone disappear from `/metrics`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an unused pair keeps its place (and the exporter keeps its series).
pub const IDLE: Duration = Duration::from_secs(10 * 60);

/// The labels every pair beyond the budget shares.
pub const OTHER: &str = "_other";

/// Budget unless [`set_limit`] says otherwise.
const DEFAULT_LIMIT: usize = 1_000;

/// The pairs holding a place, with when each was last used.
struct Admitted {
    /// project → queue → last use.
    pairs: HashMap<String, HashMap<String, Instant>>,
    len: usize,
    last_sweep: Instant,
}

static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_LIMIT);

fn admitted() -> &'static Mutex<Admitted> {
    static ADMITTED: OnceLock<Mutex<Admitted>> = OnceLock::new();
    ADMITTED.get_or_init(|| {
        Mutex::new(Admitted {
            pairs: HashMap::new(),
            len: 0,
            last_sweep: Instant::now(),
        })
    })
}

/// Sets how many distinct (project, queue) pairs this process labels (at least 1). Pairs
/// already admitted keep their place until they go idle.
pub fn set_limit(max: usize) {
    LIMIT.store(max.max(1), Ordering::Relaxed);
}

/// The `project` and `queue` labels for a pair: its own while it holds (or can take) a
/// place, `_other` otherwise. Every call counts as a use.
pub fn labels(project: &str, queue: &str) -> [(&'static str, String); 2] {
    if admit(project, queue, Instant::now()) {
        [("project", project.to_owned()), ("queue", queue.to_owned())]
    } else {
        [("project", OTHER.to_owned()), ("queue", OTHER.to_owned())]
    }
}

fn admit(project: &str, queue: &str, now: Instant) -> bool {
    let mut a = admitted().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(used) = a.pairs.get_mut(project).and_then(|q| q.get_mut(queue)) {
        *used = now;
        return true;
    }
    let limit = LIMIT.load(Ordering::Relaxed);
    // Full: give idle pairs' places up, at most once a second (a sweep walks every pair).
    if a.len >= limit && now.duration_since(a.last_sweep) >= Duration::from_secs(1) {
        a.last_sweep = now;
        let mut removed = 0;
        a.pairs.retain(|_, queues| {
            let before = queues.len();
            queues.retain(|_, used| now.duration_since(*used) < IDLE);
            removed += before - queues.len();
            !queues.is_empty()
        });
        a.len -= removed;
    }
    if a.len >= limit {
        return false;
    }
    a.len += 1;
    a.pairs
        .entry(project.to_owned())
        .or_default()
        .insert(queue.to_owned(), now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the budget is process-wide.
    #[test]
    fn pairs_beyond_the_budget_share_other_until_places_free_up() {
        set_limit(3);
        let t0 = Instant::now();
        for q in ["a", "b", "c"] {
            assert!(admit("p1", q, t0));
        }
        assert!(!admit("p1", "d", t0), "over budget");
        assert!(!admit("p2", "a", t0));
        assert!(admit("p1", "b", t0), "admitted pairs stay admitted");
        let [_, (_, queue)] = labels("p9", "z");
        assert_eq!(queue, OTHER);

        // "a" and "c" go unused for the idle time; "b" keeps being used.
        let later = t0 + IDLE + Duration::from_secs(2);
        assert!(admit("p1", "b", later - Duration::from_secs(1)));
        assert!(admit("p2", "a", later), "an idle place was given up");
        assert!(admit("p1", "d", later));
        assert!(!admit("p1", "e", later), "full again");
        assert!(admit("p1", "b", later));
        set_limit(DEFAULT_LIMIT);
    }
}
