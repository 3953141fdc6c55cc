//! Queue and job types: newtypes parsed at the edge, states, and the stored shapes.

pub use crate::backoff::Backoff;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use switchboard_core::time::Timestamp;
use utoipa::ToSchema;

switchboard_core::typed_id!(
    /// A job.
    JobId,
    "job"
);
switchboard_core::typed_id!(
    /// A cron schedule.
    ScheduleId,
    "sched"
);

/// Why a value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// Which field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl Invalid {
    /// A complaint about `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Invalid {
        Invalid {
            field,
            message: message.into(),
        }
    }
}

fn name_like(field: &'static str, s: &str, max: usize) -> Result<String, Invalid> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Invalid::new(
            field,
            format!("must be 1 to {max} characters of a-z, A-Z, 0-9, `-`, `_`, `.`, `:`"),
        ))
    }
}

/// A queue name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "emails")]
pub struct QueueName(String);

impl QueueName {
    /// Parses a queue name.
    pub fn parse(s: &str) -> Result<QueueName, Invalid> {
        name_like("queue", s, 100).map(QueueName)
    }
    /// Read back from our database.
    pub fn from_db(s: String) -> QueueName {
        QueueName(s)
    }
    /// As text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job kind (what the handler does).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "send_welcome")]
pub struct JobKind(String);

impl JobKind {
    /// Parses a kind.
    pub fn parse(s: &str) -> Result<JobKind, Invalid> {
        name_like("kind", s, 200).map(JobKind)
    }
    /// Read back from our database.
    pub fn from_db(s: String) -> JobKind {
        JobKind(s)
    }
    /// As text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lower runs first. Named levels: critical 0, high 1, normal 2, low 3; numbers 0–100.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = i32, example = 2)]
pub struct Priority(i32);

impl Priority {
    /// The default.
    pub const NORMAL: Priority = Priority(2);
    /// Most urgent (OTP codes, payment callbacks).
    pub const CRITICAL: Priority = Priority(0);

    /// From a name or a number.
    pub fn parse(v: &serde_json::Value) -> Result<Priority, Invalid> {
        let bad = || {
            Invalid::new(
                "priority",
                "must be critical, high, normal, low or 0 to 100",
            )
        };
        match v {
            serde_json::Value::String(s) => match s.as_str() {
                "critical" => Ok(Priority(0)),
                "high" => Ok(Priority(1)),
                "normal" => Ok(Priority(2)),
                "low" => Ok(Priority(3)),
                _ => Err(bad()),
            },
            serde_json::Value::Number(n) => n
                .as_i64()
                .filter(|n| (0..=100).contains(n))
                .map(|n| Priority(n as i32))
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }
    /// Stored value.
    pub fn value(self) -> i32 {
        self.0
    }
    /// From storage.
    pub fn from_db(v: i32) -> Priority {
        Priority(v)
    }
}

/// A job's lifecycle state.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its `run_at`.
    Scheduled,
    /// Ready to be claimed.
    Available,
    /// Claimed by a worker holding a lease.
    Running,
    /// Done.
    Completed,
    /// Failed an attempt; waits for its next try.
    Retryable,
    /// Out of attempts (or failed permanently).
    Failed,
    /// Cancelled.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 7] = [
        JobState::Scheduled,
        JobState::Available,
        JobState::Running,
        JobState::Completed,
        JobState::Retryable,
        JobState::Failed,
        JobState::Cancelled,
    ];
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Retryable => "retryable",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
    /// Parses a stored or requested name.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }
    /// Completed, failed or cancelled.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Where Switchboard sends an HTTP-push job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `http://` or `https://` URL.
    pub url: String,
    /// `POST` (default), `PUT` or `PATCH`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_method() -> String {
    "POST".into()
}

impl Target {
    /// Checks URL, method and headers.
    pub fn validate(&self) -> Result<(), Invalid> {
        let url =
            url::Url::parse(&self.url).map_err(|e| Invalid::new("target", format!("url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Invalid::new("target", "url must be http or https"));
        }
        if !matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            return Err(Invalid::new("target", "method must be POST, PUT or PATCH"));
        }
        for (k, v) in &self.headers {
            let lower = k.to_ascii_lowercase();
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
                || lower.starts_with("webhook-")
                || lower == "content-length"
                || lower == "host"
            {
                return Err(Invalid::new(
                    "target",
                    format!("header `{k}` is not allowed"),
                ));
            }
        }
        Ok(())
    }
}

/// How a job is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Runner {
    /// Claimed by an external worker over HTTP.
    Pull,
    /// POSTed by Switchboard to its `target`.
    Push,
    /// Run by a handler registered in this process.
    Local,
}

impl Runner {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Runner::Pull => "pull",
            Runner::Push => "push",
            Runner::Local => "local",
        }
    }
    /// From storage.
    pub fn parse(s: &str) -> Runner {
        match s {
            "push" => Runner::Push,
            "local" => Runner::Local,
            _ => Runner::Pull,
        }
    }
}

/// A validated job to insert.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// Queue.
    pub queue: QueueName,
    /// Kind.
    pub kind: JobKind,
    /// Opaque JSON.
    pub payload: serde_json::Value,
    /// Lower first.
    pub priority: Priority,
    /// Earliest start.
    pub run_at: Timestamp,
    /// Attempts before `failed`.
    pub max_attempts: i32,
    /// Delay policy between attempts.
    pub backoff: Backoff,
    /// Longest a single attempt may run, ms.
    pub timeout_ms: i64,
    /// Dedupe key and how long it holds (seconds).
    pub unique: Option<(String, i64)>,
    /// Labels for filtering.
    pub tags: Vec<String>,
    /// For HTTP push.
    pub target: Option<Target>,
    /// Who runs it.
    pub runner: Runner,
}

/// Attempts a job gets unless it says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 3;
/// Longest an attempt may run unless the job says otherwise, ms.
pub const DEFAULT_TIMEOUT_MS: i64 = 30_000;

impl NewJob {
    /// A job for this node's in-process handler of `kind`, runnable now, with the defaults
    /// of `POST /v1/jobs` (normal priority, 3 attempts, exponential backoff, 30 s timeout):
    /// how built-in modules enqueue their own work.
    pub fn local(queue: QueueName, kind: JobKind, payload: serde_json::Value) -> NewJob {
        NewJob {
            queue,
            kind,
            payload,
            priority: Priority::NORMAL,
            run_at: switchboard_core::time::now(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::default(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            unique: None,
            tags: Vec::new(),
            target: None,
            runner: Runner::Local,
        }
    }
}

/// A stored job.
#[derive(Clone, Debug, Serialize, PartialEq, ToSchema)]
pub struct Job {
    /// `job_…`
    #[schema(value_type = String, example = "job_01jqz6w0m3f2t9x4y5z6a7b8c9")]
    pub id: JobId,
    /// Queue.
    pub queue: QueueName,
    /// Kind.
    pub kind: JobKind,
    /// Payload.
    pub payload: serde_json::Value,
    /// State.
    pub state: JobState,
    /// Priority (lower first).
    pub priority: Priority,
    /// Earliest (next) start.
    #[schema(value_type = String, format = DateTime)]
    pub run_at: Timestamp,
    /// Attempts started so far.
    pub attempt: i32,
    /// Attempt limit.
    pub max_attempts: i32,
    /// Retry policy.
    pub backoff: Backoff,
    /// Per-attempt time limit, ms.
    pub timeout_ms: i64,
    /// Dedupe key.
    pub unique_key: Option<String>,
    /// Labels.
    pub tags: Vec<String>,
    /// Latest progress report.
    pub progress: Option<serde_json::Value>,
    /// Result of the successful attempt.
    pub result: Option<serde_json::Value>,
    /// Error of the latest failed attempt.
    pub last_error: Option<String>,
    /// HTTP push target.
    pub target: Option<Target>,
    /// Who runs it.
    pub runner: Runner,
    /// Worker holding the lease.
    pub worker: Option<String>,
    /// When the current lease ends.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub lease_expires_at: Option<Timestamp>,
    /// Created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Latest attempt start.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    /// Reached a final state.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
}

/// A job handed to a worker, with its fencing token.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ClaimedJob {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// Must accompany heartbeat, complete and fail; a re-leased job gets a new one.
    pub lease_token: String,
}

/// One failed attempt.
#[derive(Clone, Debug, Serialize, PartialEq, ToSchema)]
pub struct AttemptError {
    /// Attempt number, from 1.
    pub attempt: i32,
    /// What went wrong.
    pub error: String,
    /// Worker that ran it.
    pub worker: Option<String>,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// Per-queue settings.
#[derive(Clone, Debug, Serialize, PartialEq, ToSchema)]
pub struct QueueSettings {
    /// Most jobs of this queue ONE worker runs at once: a node's runtime (in-process and
    /// push jobs) is one worker; a pull worker is the `worker` name of its claims (a claim
    /// takes at most this minus the jobs already running under that name). Shown as
    /// "N per worker".
    pub concurrency: i32,
    /// Most running jobs of this queue across all workers and nodes (pull, push and
    /// in-process), if capped. Shown as "cluster cap N".
    pub global_concurrency: Option<i32>,
    /// Token bucket: at most `limit` starts per `period_ms`, cluster-wide.
    pub rate_limit: Option<RateLimit>,
    /// Paused queues hand out no jobs.
    pub paused: bool,
    /// How long completed jobs are kept, seconds.
    pub keep_completed_secs: i64,
    /// How long failed jobs are kept, seconds.
    pub keep_failed_secs: i64,
    /// How long cancelled jobs are kept, seconds.
    pub keep_cancelled_secs: i64,
}

impl QueueSettings {
    /// The limits on running jobs in words: `2 per worker`, `2 per worker, cluster cap 5`.
    pub fn running_limit(&self) -> String {
        match self.global_concurrency {
            Some(cap) => format!("{} per worker, cluster cap {cap}", self.concurrency),
            None => format!("{} per worker", self.concurrency),
        }
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            concurrency: 10,
            global_concurrency: None,
            rate_limit: None,
            paused: false,
            keep_completed_secs: 24 * 3600,
            keep_failed_secs: 7 * 24 * 3600,
            keep_cancelled_secs: 24 * 3600,
        }
    }
}

/// A queue's start-rate limit.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Starts allowed per period (also the burst).
    pub limit: i32,
    /// Period, ms.
    pub period_ms: i64,
}

/// A queue with its counters.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct QueueInfo {
    /// Name.
    pub name: QueueName,
    /// Settings.
    #[serde(flatten)]
    pub settings: QueueSettings,
    /// Jobs per state, from maintained counters.
    #[schema(value_type = std::collections::HashMap<String, i64>)]
    pub counts: BTreeMap<JobState, i64>,
    /// Jobs completed in the last minute.
    pub completed_last_minute: i64,
    /// Jobs failed (final) in the last minute.
    pub failed_last_minute: i64,
}

/// A job as clients describe it (`POST /v1/jobs`, cron schedules).
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Queue name.
    pub queue: String,
    /// Job kind.
    pub kind: String,
    /// Opaque JSON payload.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// `critical`, `high`, `normal` (default), `low`, or 0–100 (lower first).
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = "high")]
    pub priority: Option<serde_json::Value>,
    /// Earliest start (RFC 3339).
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub run_at: Option<Timestamp>,
    /// Or a delay from now, ms.
    #[serde(default)]
    pub delay_ms: Option<i64>,
    /// Attempts before failing (default 3).
    #[serde(default)]
    pub max_attempts: Option<i32>,
    /// Retry delays (default exponential with jitter from 1 s).
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// Per-attempt limit, ms (default 30 s).
    #[serde(default)]
    pub timeout_ms: Option<i64>,
    /// Dedupe key: while held, enqueueing the same key returns the existing job.
    #[serde(default)]
    pub unique_key: Option<String>,
    /// How long the key is held, seconds (default 3600).
    #[serde(default)]
    pub unique_window_secs: Option<i64>,
    /// Labels for filtering.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Makes it an HTTP-push job.
    #[serde(default)]
    pub target: Option<Target>,
}

/// Largest payload accepted, bytes of JSON.
pub const MAX_PAYLOAD_BYTES: usize = 512 * 1024;

/// Largest result or progress a job stores, bytes of JSON (pull workers are refused beyond
/// it; push answers and in-process results beyond it are stored as [`truncated_result`]).
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// What a job stores instead of a result larger than [`MAX_RESULT_BYTES`].
pub fn truncated_result() -> serde_json::Value {
    serde_json::json!({"truncated": true, "limit_bytes": MAX_RESULT_BYTES})
}

/// Length of `v` serialised as compact JSON, without building the text.
pub fn json_len(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Refuses a `field` (result, progress) larger than [`MAX_RESULT_BYTES`].
pub fn check_result_size(
    field: &'static str,
    v: Option<&serde_json::Value>,
) -> Result<(), Invalid> {
    match v {
        Some(v) if json_len(v) > MAX_RESULT_BYTES => Err(Invalid::new(
            field,
            format!("must be at most {MAX_RESULT_BYTES} bytes of JSON"),
        )),
        _ => Ok(()),
    }
}

impl JobSpec {
    /// Validates everything, returning every problem at once. `local_kinds` are the kinds
    /// with in-process handlers (their jobs are run by the node, not by pull workers).
    pub fn validate(&self, now: Timestamp, local_kinds: &[String]) -> Result<NewJob, Vec<Invalid>> {
        let mut errors = Vec::new();
        let queue = QueueName::parse(&self.queue)
            .map_err(|e| errors.push(e))
            .ok();
        let kind = JobKind::parse(&self.kind).map_err(|e| errors.push(e)).ok();
        let priority = match &self.priority {
            None => Priority::NORMAL,
            Some(v) => Priority::parse(v).unwrap_or_else(|e| {
                errors.push(e);
                Priority::NORMAL
            }),
        };
        let run_at = match (self.run_at, self.delay_ms) {
            (Some(_), Some(_)) => {
                errors.push(Invalid::new(
                    "delay_ms",
                    "give run_at or delay_ms, not both",
                ));
                now
            }
            (Some(t), None) => t,
            (None, Some(d)) if (0..=365 * 24 * 3600 * 1000).contains(&d) => {
                switchboard_core::time::from_db(switchboard_core::time::to_db(now) + d * 1000)
            }
            (None, Some(_)) => {
                errors.push(Invalid::new("delay_ms", "must be 0 to one year"));
                now
            }
            (None, None) => now,
        };
        let max_attempts = self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if !(1..=1000).contains(&max_attempts) {
            errors.push(Invalid::new("max_attempts", "must be 1 to 1000"));
        }
        let backoff = self.backoff.clone().unwrap_or_default();
        if let Err(e) = backoff.validate() {
            errors.push(e);
        }
        let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(1..=24 * 3600 * 1000).contains(&timeout_ms) {
            errors.push(Invalid::new("timeout_ms", "must be 1 ms to 24 hours"));
        }
        let window = self.unique_window_secs.unwrap_or(3600);
        if !(1..=30 * 24 * 3600).contains(&window) {
            errors.push(Invalid::new("unique_window_secs", "must be 1 s to 30 days"));
        }
        if self
            .unique_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > 255)
        {
            errors.push(Invalid::new("unique_key", "must be 1 to 255 characters"));
        }
        if self.tags.len() > 20
            || self
                .tags
                .iter()
                .any(|t| t.is_empty() || t.len() > 100 || t.contains(','))
        {
            errors.push(Invalid::new(
                "tags",
                "at most 20 tags of 1 to 100 characters without `,`",
            ));
        }
        if let Some(t) = &self.target {
            if let Err(e) = t.validate() {
                errors.push(e);
            }
        }
        if self.payload.to_string().len() > MAX_PAYLOAD_BYTES {
            errors.push(Invalid::new(
                "payload",
                format!("must be at most {MAX_PAYLOAD_BYTES} bytes of JSON"),
            ));
        }
        match (queue, kind) {
            (Some(queue), Some(kind)) if errors.is_empty() => {
                let runner = if self.target.is_some() {
                    Runner::Push
                } else if local_kinds.iter().any(|k| k == kind.as_str()) {
                    Runner::Local
                } else {
                    Runner::Pull
                };
                Ok(NewJob {
                    queue,
                    kind,
                    payload: self.payload.clone(),
                    priority,
                    run_at,
                    max_attempts,
                    backoff,
                    timeout_ms,
                    unique: self.unique_key.clone().map(|k| (k, window)),
                    tags: self.tags.clone(),
                    target: self.target.clone(),
                    runner,
                })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_limit_reads_as_words() {
        let mut s = QueueSettings {
            concurrency: 2,
            ..QueueSettings::default()
        };
        assert_eq!(s.running_limit(), "2 per worker");
        s.global_concurrency = Some(5);
        assert_eq!(s.running_limit(), "2 per worker, cluster cap 5");
    }

    #[test]
    fn result_size_is_measured_as_compact_json() {
        let v = serde_json::json!({"a": [1, 2, "é"]});
        assert_eq!(json_len(&v), v.to_string().len());
        let at_limit = serde_json::json!("x".repeat(MAX_RESULT_BYTES - 2));
        assert_eq!(json_len(&at_limit), MAX_RESULT_BYTES);
        assert!(check_result_size("result", Some(&at_limit)).is_ok());
        let over = serde_json::json!("x".repeat(MAX_RESULT_BYTES - 1));
        let e = check_result_size("result", Some(&over)).unwrap_err();
        assert_eq!(e.field, "result");
        assert!(check_result_size("progress", None).is_ok());
    }
}
