//! A job's history as runs. A manual retry gives a finished job a fresh set of attempts
//! (attempt back to 0) while `job_errors` keeps the failed attempts of every earlier run, so
//! in time order the attempt numbers restart: `1, 2, 1, 2` is two runs of two attempts.

use crate::model::{AttemptError, Job};

/// One run of a job: from its enqueue or a manual retry to its end.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// 1 for the first run.
    pub number: usize,
    /// Its failed attempts, oldest first.
    pub errors: Vec<AttemptError>,
    /// The job's latest run (the one its state and attempt counter describe).
    pub current: bool,
}

/// Splits `errors` (ordered by time, as [`crate::store::attempt_errors`] returns them) into
/// runs. The last group of errors belongs to the job's current run unless the job moved on:
/// a lower attempt number than that group's last error, or the same number started after it
/// (a fresh attempt that has not failed yet).
pub fn runs(job: &Job, errors: &[AttemptError]) -> Vec<Run> {
    let mut groups: Vec<Vec<AttemptError>> = Vec::new();
    for e in errors {
        match groups.last_mut() {
            Some(g) if g.last().is_some_and(|prev| e.attempt > prev.attempt) => g.push(e.clone()),
            _ => groups.push(vec![e.clone()]),
        }
    }
    let last_is_current = errors.last().is_some_and(|last| {
        job.attempt > last.attempt
            || (job.attempt == last.attempt && job.started_at.is_none_or(|s| s <= last.at))
    });
    if !last_is_current {
        groups.push(Vec::new());
    }
    let n = groups.len();
    groups
        .into_iter()
        .enumerate()
        .map(|(i, errors)| Run {
            number: i + 1,
            errors,
            current: i + 1 == n,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backoff, JobId, JobKind, JobState, Priority, QueueName, Runner};
    use switchboard_core::time::{self, Timestamp};

    fn at(s: i64) -> Timestamp {
        time::from_db(s * 1_000_000)
    }

    fn job(state: JobState, attempt: i32, started: Option<i64>) -> Job {
        Job {
            id: JobId::generate(),
            queue: QueueName::from_db("q".into()),
            kind: JobKind::from_db("k".into()),
            payload: serde_json::Value::Null,
            state,
            priority: Priority::NORMAL,
            run_at: at(0),
            attempt,
            max_attempts: 2,
            backoff: Backoff::default(),
            timeout_ms: 1000,
            unique_key: None,
            tags: Vec::new(),
            progress: None,
            result: None,
            last_error: None,
            target: None,
            runner: Runner::Pull,
            worker: None,
            lease_expires_at: None,
            created_at: at(0),
            started_at: started.map(at),
            finished_at: None,
        }
    }

    fn err(attempt: i32, when: i64) -> AttemptError {
        AttemptError {
            attempt,
            error: format!("boom {when}"),
            worker: None,
            at: at(when),
        }
    }

    fn shape(runs: &[Run]) -> Vec<(Vec<i32>, bool)> {
        runs.iter()
            .map(|r| (r.errors.iter().map(|e| e.attempt).collect(), r.current))
            .collect()
    }

    #[test]
    fn restarting_attempt_numbers_start_new_runs() {
        let errors = [err(1, 10), err(2, 20), err(1, 30), err(2, 40), err(1, 50)];
        // Failed at attempt 1 of the third run: the last group is the current run.
        let r = runs(&job(JobState::Retryable, 1, Some(49)), &errors);
        assert_eq!(
            shape(&r),
            [(vec![1, 2], false), (vec![1, 2], false), (vec![1], true)]
        );
        assert_eq!(r.iter().map(|r| r.number).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn a_retried_job_is_in_a_new_run_without_errors_yet() {
        let errors = [err(1, 10), err(2, 20)];
        // Retried: attempt back to 0.
        let r = runs(&job(JobState::Available, 0, Some(15)), &errors);
        assert_eq!(shape(&r), [(vec![1, 2], false), (vec![], true)]);
        // Running attempt 1 of the new run.
        let r = runs(&job(JobState::Running, 1, Some(60)), &errors);
        assert_eq!(shape(&r), [(vec![1, 2], false), (vec![], true)]);
    }

    #[test]
    fn same_attempt_number_started_after_the_error_is_a_new_run() {
        let errors = [err(1, 10)];
        // Failed permanently at attempt 1, retried, now completed at attempt 1.
        let r = runs(&job(JobState::Completed, 1, Some(30)), &errors);
        assert_eq!(shape(&r), [(vec![1], false), (vec![], true)]);
        // Still the same attempt that failed.
        let r = runs(&job(JobState::Failed, 1, Some(5)), &errors);
        assert_eq!(shape(&r), [(vec![1], true)]);
    }

    #[test]
    fn no_errors_is_one_current_run() {
        let r = runs(&job(JobState::Completed, 1, Some(5)), &[]);
        assert_eq!(shape(&r), [(vec![], true)]);
    }
}
