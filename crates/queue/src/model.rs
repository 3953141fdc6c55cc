//! Queue and job types: newtypes parsed at the edge, states, and the stored shapes.

pub use crate::backoff::Backoff;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use switchboard_core::rules::{self, Chars, Int, Items, Text};
use switchboard_core::time::Timestamp;
use utoipa::openapi::schema::{Object, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::ToSchema;

/// Queue names: what [`QueueName::parse`] accepts.
pub const QUEUE_NAME: Text = Text::new(1, 100, Chars::Name("._:-"));
/// Job kinds: what [`JobKind::parse`] accepts.
pub const JOB_KIND: Text = Text::new(1, 200, Chars::Name("._:-"));
/// Numeric priorities.
pub const PRIORITY: Int = Int::new(0, 100);
/// Named priorities and their numbers.
pub const PRIORITY_NAMES: [(&str, i32); 4] =
    [("critical", 0), ("high", 1), ("normal", 2), ("low", 3)];
/// `delay_ms` of a job.
pub const DELAY_MS: Int = Int::new(0, 365 * 24 * 3600 * 1000).said("0 to one year (in ms)");
/// `max_attempts` of a job.
pub const MAX_ATTEMPTS: Int = Int::new(1, 1000);
/// `timeout_ms` of a job.
pub const TIMEOUT_MS: Int = Int::new(1, 24 * 3600 * 1000).said("1 ms to 24 hours (in ms)");
/// `unique_key` of a job.
pub const UNIQUE_KEY: Text = Text::new(1, 255, Chars::Any);
/// `unique_window_secs` of a job.
pub const UNIQUE_WINDOW_SECS: Int = Int::new(1, 30 * 24 * 3600).said("1 s to 30 days (in seconds)");
/// How many tags a job carries.
pub const TAGS: Items = Items::new(0, 20);
/// One tag.
pub const TAG: Text = Text::new(1, 100, Chars::Without(","));
/// Methods of an HTTP-push target.
pub const TARGET_METHODS: [&str; 3] = ["POST", "PUT", "PATCH"];
/// Header names a push target may not set (matched case-insensitively): Switchboard writes
/// them itself.
pub const RESERVED_HEADERS: [&str; 2] = ["content-length", "host"];
/// Header-name prefix reserved for the Standard Webhooks signature headers.
pub const RESERVED_HEADER_PREFIX: &str = "webhook-";
/// Fields of which a job gives at most one.
pub const EXCLUSIVE_START: [&str; 2] = ["run_at", "delay_ms"];
/// Names of Switchboard's own queues and job kinds start with this (`sb.notify`,
/// `sb.notify.deliver`): API callers cannot enqueue such jobs, claim from such queues or
/// create them (see [`crate::handler::BuiltinKind`]).
pub const RESERVED_PREFIX: &str = "sb.";
/// Why a reserved name is refused.
pub const RESERVED_MESSAGE: &str =
    "names starting with `sb.` are reserved for Switchboard's built-in jobs";

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

fn name_like(field: &'static str, s: &str, rule: Text) -> Result<String, Invalid> {
    rule.check(s)
        .map(|()| s.to_owned())
        .map_err(|m| Invalid::new(field, m))
}

/// A queue name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "emails")]
pub struct QueueName(String);

impl QueueName {
    /// Parses a queue name.
    pub fn parse(s: &str) -> Result<QueueName, Invalid> {
        name_like("queue", s, QUEUE_NAME).map(QueueName)
    }
    /// Read back from our database.
    pub fn from_db(s: String) -> QueueName {
        QueueName(s)
    }
    /// One of Switchboard's own queues ([`RESERVED_PREFIX`]).
    pub fn is_reserved(&self) -> bool {
        self.0.starts_with(RESERVED_PREFIX)
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
        name_like("kind", s, JOB_KIND).map(JobKind)
    }
    /// Read back from our database.
    pub fn from_db(s: String) -> JobKind {
        JobKind(s)
    }
    /// One of Switchboard's built-in kinds ([`RESERVED_PREFIX`]).
    pub fn is_reserved(&self) -> bool {
        self.0.starts_with(RESERVED_PREFIX)
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
            let names: Vec<&str> = PRIORITY_NAMES.iter().map(|(n, _)| *n).collect();
            Invalid::new(
                "priority",
                format!(
                    "must be {} or an integer from {} to {}",
                    names.join(", "),
                    PRIORITY.min,
                    PRIORITY.max
                ),
            )
        };
        match v {
            serde_json::Value::String(s) => PRIORITY_NAMES
                .iter()
                .find(|(name, _)| name == s)
                .map(|(_, n)| Priority(*n))
                .ok_or_else(bad),
            serde_json::Value::Number(n) => n
                .as_i64()
                .filter(|n| PRIORITY.contains(*n))
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
    #[schema(schema_with = target_url_schema)]
    pub url: String,
    /// `POST` (default), `PUT` or `PATCH`.
    #[serde(default = "default_method")]
    #[schema(schema_with = target_method_schema)]
    pub method: String,
    /// Extra request headers.
    #[serde(default)]
    #[schema(schema_with = target_headers_schema)]
    pub headers: BTreeMap<String, String>,
}

/// A pattern matching `s` in any letter case (JSON Schema patterns have no flags).
fn any_case(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
            } else {
                regex_escape(c)
            }
        })
        .collect()
}

fn regex_escape(c: char) -> String {
    if "\\^$.|?*+()[]{}-/".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// Characters of a header name besides letters and digits (RFC 9110 `tchar`), which
/// `http::HeaderName` accepts.
pub const HEADER_NAME_PUNCTUATION: &str = "!#$%&'*+.^_`|~-";

fn target_url_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(utoipa::openapi::SchemaFormat::Custom("uri".into())))
        .pattern(Some(format!(
            "^{}(?:{})?://[^/?#\\s]",
            any_case("http"),
            any_case("s")
        )))
        .description(Some(
            "An `http://` or `https://` URL. One whose host is an IP address this node may not \
             reach (loopback, private ranges…, see `SWITCHBOARD_PUSH_ALLOW`) is refused.",
        ))
        .build()
}

fn target_method_schema() -> Object {
    let mut o = rules::one_of(&TARGET_METHODS, "HTTP method (default `POST`).");
    o.default = Some(serde_json::json!(TARGET_METHODS[0]));
    o
}

fn target_headers_schema() -> Object {
    let reserved: Vec<String> = RESERVED_HEADERS
        .iter()
        .map(|h| format!("{}$", any_case(h)))
        .chain(std::iter::once(any_case(RESERVED_HEADER_PREFIX)))
        .collect();
    let punctuation: String = HEADER_NAME_PUNCTUATION.chars().map(regex_escape).collect();
    let mut names = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^[A-Za-z0-9{punctuation}]+$")))
        .build();
    // Not a reserved name: `not` is not among utoipa's keywords, so it goes in as an extension.
    names
        .extensions
        .get_or_insert_with(Default::default)
        .insert(
            "not".into(),
            serde_json::json!({"pattern": format!("^(?:{})", reserved.join("|"))}),
        );
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(names))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                // What `http::HeaderValue` accepts: no control character but tab.
                .pattern(Some("^[^\\u0000-\\u0008\\u000A-\\u001F\\u007F]*$")),
        ))
        .description(Some(format!(
            "Extra request headers; names are HTTP tokens other than {}, `{}…`; values have no \
             control characters but tab.",
            RESERVED_HEADERS.map(|h| format!("`{h}`")).join(", "),
            RESERVED_HEADER_PREFIX
        )))
        .build()
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
        if !TARGET_METHODS.contains(&self.method.as_str()) {
            return Err(Invalid::new(
                "target",
                format!("method must be {}", TARGET_METHODS.join(", ")),
            ));
        }
        for (k, v) in &self.headers {
            let lower = k.to_ascii_lowercase();
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
                || lower.starts_with(RESERVED_HEADER_PREFIX)
                || RESERVED_HEADERS.contains(&lower.as_str())
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

impl NewJob {
    /// Built-in work stays apart from tenants' work: a job of a built-in kind runs in-process
    /// in a built-in queue, and a built-in queue holds only such jobs (see
    /// [`RESERVED_PREFIX`]). No statement: every enqueue checks it.
    pub fn check_reserved(&self) -> Result<(), Invalid> {
        match (self.kind.is_reserved(), self.queue.is_reserved()) {
            (false, false) => Ok(()),
            (true, true) if self.runner == Runner::Local => Ok(()),
            (true, true) => Err(Invalid::new(
                "kind",
                "a built-in kind (`sb.…`) runs in-process, without a target",
            )),
            (true, false) => Err(Invalid::new(
                "queue",
                "jobs of a built-in kind (`sb.…`) run in a built-in queue (`sb.…`)",
            )),
            (false, true) => Err(Invalid::new(
                "kind",
                "a built-in queue (`sb.…`) holds only jobs of built-in kinds (`sb.…`)",
            )),
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
    #[schema(schema_with = rate_limit_schema)]
    pub limit: i32,
    /// Period, ms.
    #[schema(schema_with = rate_period_schema)]
    pub period_ms: i64,
}

/// `limit` of a queue's rate limit.
pub const RATE_LIMIT: Int = Int::new(1, 1_000_000);
/// `period_ms` of a queue's rate limit.
pub const RATE_PERIOD_MS: Int = Int::new(1, 86_400_000).said("1 to 86400000 (one day in ms)");

fn rate_limit_schema() -> Object {
    RATE_LIMIT.schema("Starts allowed per period (also the burst)")
}
fn rate_period_schema() -> Object {
    RATE_PERIOD_MS.schema("Period, ms")
}

impl RateLimit {
    /// Checks both numbers; the messages name the field.
    pub fn check(&self) -> Result<(), String> {
        RATE_LIMIT
            .check(i64::from(self.limit))
            .map_err(|m| format!("limit {m}"))?;
        RATE_PERIOD_MS
            .check(self.period_ms)
            .map_err(|m| format!("period_ms {m}"))?;
        Ok(())
    }
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
    #[schema(schema_with = queue_schema)]
    pub queue: String,
    /// Job kind.
    #[schema(schema_with = kind_schema)]
    pub kind: String,
    /// Opaque JSON payload.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// `critical`, `high`, `normal` (default), `low`, or 0–100 (lower first).
    #[serde(default)]
    #[schema(schema_with = priority_schema)]
    pub priority: Option<serde_json::Value>,
    /// Earliest start (RFC 3339).
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub run_at: Option<Timestamp>,
    /// Or a delay from now, ms.
    #[serde(default)]
    #[schema(schema_with = delay_schema)]
    pub delay_ms: Option<i64>,
    /// Attempts before failing (default 3).
    #[serde(default)]
    #[schema(schema_with = max_attempts_schema)]
    pub max_attempts: Option<i32>,
    /// Retry delays (default exponential with jitter from 1 s).
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// Per-attempt limit, ms (default 30 s).
    #[serde(default)]
    #[schema(schema_with = timeout_schema)]
    pub timeout_ms: Option<i64>,
    /// Dedupe key: while held, enqueueing the same key returns the existing job.
    #[serde(default)]
    #[schema(schema_with = unique_key_schema)]
    pub unique_key: Option<String>,
    /// How long the key is held, seconds (default 3600).
    #[serde(default)]
    #[schema(schema_with = unique_window_schema)]
    pub unique_window_secs: Option<i64>,
    /// Labels for filtering.
    #[serde(default)]
    #[schema(schema_with = tags_schema)]
    pub tags: Vec<String>,
    /// Makes it an HTTP-push job.
    #[serde(default)]
    pub target: Option<Target>,
}

fn queue_schema() -> Object {
    unreserved(QUEUE_NAME.schema("Queue name (not starting with `sb.`: reserved)"))
}
fn kind_schema() -> Object {
    unreserved(JOB_KIND.schema("Job kind (not starting with `sb.`: reserved)"))
}
/// Adds to a name's schema that it does not start with [`RESERVED_PREFIX`] (`not` is not among
/// utoipa's keywords, so it goes in as an extension).
fn unreserved(mut o: Object) -> Object {
    o.extensions.get_or_insert_with(Default::default).insert(
        "not".into(),
        serde_json::json!({"pattern": format!("^{}", RESERVED_PREFIX.replace('.', "\\."))}),
    );
    o
}
fn delay_schema() -> Object {
    DELAY_MS.nullable("Start this many ms from now (instead of `run_at`)")
}
fn max_attempts_schema() -> Object {
    MAX_ATTEMPTS.nullable(&format!(
        "Attempts before failing (default {DEFAULT_MAX_ATTEMPTS})"
    ))
}
fn timeout_schema() -> Object {
    TIMEOUT_MS.nullable(&format!(
        "Per-attempt time limit, ms (default {DEFAULT_TIMEOUT_MS})"
    ))
}
fn unique_key_schema() -> Object {
    UNIQUE_KEY.nullable("Dedupe key: while held, enqueueing the same key returns the existing job")
}
fn unique_window_schema() -> Object {
    UNIQUE_WINDOW_SECS.nullable(&format!(
        "How long the key is held, seconds (default {DEFAULT_UNIQUE_WINDOW_SECS})"
    ))
}
fn tags_schema() -> Schema {
    TAGS.schema(TAG.schema(""), "Labels for filtering", "tags")
}

/// `priority`: a name or a number, the rule [`Priority::parse`] applies.
fn priority_schema() -> Schema {
    let names: Vec<&str> = PRIORITY_NAMES.iter().map(|(n, _)| *n).collect();
    OneOfBuilder::new()
        .item(rules::one_of(&names, "A named level"))
        .item(PRIORITY.schema("A number, lower runs first"))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(format!(
            "Lower runs first: {} (default `normal`), or 0 to 100.",
            PRIORITY_NAMES
                .iter()
                .map(|(n, v)| format!("`{n}` ({v})"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .examples([serde_json::json!("high")])
        .build()
        .into()
}

impl JobSpec {
    /// Adds to the derived schema of `JobSpec` the rule no single field can state: at most
    /// one of [`EXCLUSIVE_START`] is given (non-null).
    pub fn constrain_schema(schema: &mut Object) {
        let mut props = serde_json::Map::new();
        props.insert(
            EXCLUSIVE_START[0].into(),
            serde_json::json!({"type": "string"}),
        );
        props.insert(
            EXCLUSIVE_START[1].into(),
            serde_json::json!({"type": "integer"}),
        );
        schema
            .extensions
            .get_or_insert_with(Default::default)
            .insert(
                "not".into(),
                serde_json::json!({"required": EXCLUSIVE_START, "properties": props}),
            );
    }
}

/// How long a unique key holds unless the job says otherwise, seconds.
pub const DEFAULT_UNIQUE_WINDOW_SECS: i64 = 3600;

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
        // Built-in jobs are Switchboard's own: callers neither enqueue them nor use their
        // queues (every caller's job comes through here: the API, schedules, the CLI).
        if queue.as_ref().is_some_and(QueueName::is_reserved) {
            errors.push(Invalid::new("queue", RESERVED_MESSAGE));
        }
        if kind.as_ref().is_some_and(JobKind::is_reserved) {
            errors.push(Invalid::new("kind", RESERVED_MESSAGE));
        }
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
                    format!(
                        "give {} or {}, not both",
                        EXCLUSIVE_START[0], EXCLUSIVE_START[1]
                    ),
                ));
                now
            }
            (Some(t), None) => t,
            (None, Some(d)) if DELAY_MS.contains(d) => {
                switchboard_core::time::from_db(switchboard_core::time::to_db(now) + d * 1000)
            }
            (None, Some(_)) => {
                errors.push(Invalid::new("delay_ms", DELAY_MS.message()));
                now
            }
            (None, None) => now,
        };
        let max_attempts = self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if let Err(m) = MAX_ATTEMPTS.check(i64::from(max_attempts)) {
            errors.push(Invalid::new("max_attempts", m));
        }
        let backoff = self.backoff.clone().unwrap_or_default();
        if let Err(e) = backoff.validate() {
            errors.push(e);
        }
        let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if let Err(m) = TIMEOUT_MS.check(timeout_ms) {
            errors.push(Invalid::new("timeout_ms", m));
        }
        let window = self
            .unique_window_secs
            .unwrap_or(DEFAULT_UNIQUE_WINDOW_SECS);
        if let Err(m) = UNIQUE_WINDOW_SECS.check(window) {
            errors.push(Invalid::new("unique_window_secs", m));
        }
        if let Some(Err(m)) = self.unique_key.as_deref().map(|k| UNIQUE_KEY.check(k)) {
            errors.push(Invalid::new("unique_key", m));
        }
        if !TAGS.allows(self.tags.len()) {
            errors.push(Invalid::new("tags", TAGS.message("tags")));
        } else if let Some(Err(m)) = self.tags.iter().map(|t| TAG.check(t)).find(Result::is_err) {
            errors.push(Invalid::new("tags", format!("each tag {m}")));
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

    fn target(headers: &[(&str, &str)]) -> Target {
        Target {
            url: "https://example.com/hook".into(),
            method: "POST".into(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn the_header_schema_agrees_with_the_validation() {
        let schema = serde_json::to_value(target_headers_schema()).unwrap();
        // `\uXXXX` escapes mean the same in ECMA-262 and Rust's regex.
        let value =
            regex::Regex::new(schema["additionalProperties"]["pattern"].as_str().unwrap()).unwrap();
        for c in (0u32..=0x80)
            .chain([0xe9, 0x4e2d])
            .filter_map(char::from_u32)
        {
            let v = format!("a{c}b");
            assert_eq!(
                value.is_match(&v),
                target(&[("x-a", &v)]).validate().is_ok(),
                "header value with {:?}",
                c
            );
        }
        let name = regex::Regex::new(schema["propertyNames"]["pattern"].as_str().unwrap()).unwrap();
        let reserved =
            regex::Regex::new(schema["propertyNames"]["not"]["pattern"].as_str().unwrap()).unwrap();
        for n in [
            "x-trace",
            "X-Trace",
            "Authorization",
            "a!#$%&'*+.^_`|~-z",
            "",
            "a b",
            "a:b",
            "Host",
            "host",
            "HOST",
            "hostname",
            "Content-Length",
            "content-length2",
            "Webhook-Id",
            "webhook-signature",
            "x-webhook-id",
            "é",
        ] {
            let schema_ok = name.is_match(n) && !reserved.is_match(n);
            assert_eq!(
                schema_ok,
                target(&[(n, "v")]).validate().is_ok(),
                "header name {n:?}"
            );
        }
    }

    #[test]
    fn priority_schema_is_a_name_or_a_number() {
        let s = serde_json::to_value(priority_schema()).unwrap();
        let one_of = s["oneOf"].as_array().unwrap();
        assert_eq!(
            one_of[0]["enum"],
            serde_json::json!(["critical", "high", "normal", "low"])
        );
        assert_eq!(one_of[1]["type"], "integer");
        assert_eq!(one_of[1]["minimum"], 0);
        assert_eq!(one_of[1]["maximum"], 100);
        assert_eq!(one_of[2]["type"], "null");
        for (name, n) in PRIORITY_NAMES {
            assert_eq!(
                Priority::parse(&serde_json::json!(name)).unwrap().value(),
                n
            );
        }
        assert!(Priority::parse(&serde_json::json!(101)).is_err());
        assert!(Priority::parse(&serde_json::json!("urgent")).is_err());
    }

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
    fn reserved_names_are_refused_to_callers_and_kept_apart() {
        let now = switchboard_core::time::now();
        let spec = |queue: &str, kind: &str| JobSpec {
            queue: queue.into(),
            kind: kind.into(),
            payload: serde_json::Value::Null,
            priority: None,
            run_at: None,
            delay_ms: None,
            max_attempts: None,
            backoff: None,
            timeout_ms: None,
            unique_key: None,
            unique_window_secs: None,
            tags: Vec::new(),
            target: None,
        };
        let fields = |q: &str, k: &str| -> Vec<&'static str> {
            match spec(q, k).validate(now, &["sb.kind".into()]) {
                Ok(_) => Vec::new(),
                Err(e) => e.into_iter().map(|i| i.field).collect(),
            }
        };
        assert_eq!(fields("emails", "send"), Vec::<&str>::new());
        // Even a kind this node runs in-process: callers never name Switchboard's own.
        assert_eq!(fields("emails", "sb.kind"), ["kind"]);
        assert_eq!(fields("sb.notify", "send"), ["queue"]);
        assert_eq!(fields("sb.notify", "sb.kind"), ["queue", "kind"]);
        // Only the prefix with its dot is reserved.
        assert_eq!(fields("sbx", "sb"), Vec::<&str>::new());

        let job = |q: &str, k: &str| {
            NewJob::local(
                QueueName::from_db(q.into()),
                JobKind::from_db(k.into()),
                serde_json::Value::Null,
            )
        };
        assert!(job("emails", "send").check_reserved().is_ok());
        assert!(job("sb.notify", "sb.notify.deliver")
            .check_reserved()
            .is_ok());
        assert_eq!(
            job("emails", "sb.notify.deliver")
                .check_reserved()
                .unwrap_err()
                .field,
            "queue"
        );
        assert_eq!(
            job("sb.notify", "send").check_reserved().unwrap_err().field,
            "kind"
        );
        let pulled = NewJob {
            runner: Runner::Pull,
            ..job("sb.notify", "sb.notify.deliver")
        };
        assert_eq!(pulled.check_reserved().unwrap_err().field, "kind");
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
