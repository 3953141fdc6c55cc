-- Queue engine: queues with settings, jobs, attempt errors, unique keys, maintained
-- counters, per-minute throughput and cron schedules.

CREATE TABLE queues (
    project_id           TEXT NOT NULL REFERENCES projects(id),
    name                 TEXT NOT NULL,
    concurrency          INTEGER NOT NULL,
    global_concurrency   INTEGER,
    rate_limit           INTEGER,
    rate_period_ms       BIGINT,
    rate_tokens          REAL,
    rate_updated_at      BIGINT,
    paused               BOOLEAN NOT NULL,
    keep_completed_secs  BIGINT NOT NULL,
    keep_failed_secs     BIGINT NOT NULL,
    keep_cancelled_secs  BIGINT NOT NULL,
    created_at           BIGINT NOT NULL,
    PRIMARY KEY (project_id, name)
);

CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL,
    queue             TEXT NOT NULL,
    kind              TEXT NOT NULL,
    payload           TEXT NOT NULL,
    state             TEXT NOT NULL,
    priority          INTEGER NOT NULL,
    run_at            BIGINT NOT NULL,
    attempt           INTEGER NOT NULL,
    max_attempts      INTEGER NOT NULL,
    backoff           TEXT NOT NULL,
    timeout_ms        BIGINT NOT NULL,
    unique_key        TEXT,
    tags              TEXT NOT NULL,
    progress          TEXT,
    result            TEXT,
    last_error        TEXT,
    target            TEXT,
    runner            TEXT NOT NULL,
    lease_token       TEXT,
    lease_expires_at  BIGINT,
    worker            TEXT,
    created_at        BIGINT NOT NULL,
    started_at        BIGINT,
    finished_at       BIGINT
);
-- The claim path reads only this small partial index.
CREATE INDEX jobs_ready ON jobs (project_id, queue, runner, priority, run_at, id) WHERE state = 'available';
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN ('scheduled', 'retryable');
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_list ON jobs (project_id, id);
CREATE INDEX jobs_queue_state ON jobs (project_id, queue, state, id);
CREATE INDEX jobs_finished ON jobs (project_id, queue, state, finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE job_errors (
    job_id   TEXT NOT NULL,
    attempt  INTEGER NOT NULL,
    error    TEXT NOT NULL,
    worker   TEXT,
    at       BIGINT NOT NULL
);
CREATE INDEX job_errors_job ON job_errors (job_id);

CREATE TABLE job_uniques (
    project_id  TEXT NOT NULL,
    unique_key  TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (project_id, unique_key)
);

CREATE TABLE queue_counts (
    project_id  TEXT NOT NULL,
    queue       TEXT NOT NULL,
    state       TEXT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (project_id, queue, state)
);

CREATE TABLE queue_minutes (
    project_id  TEXT NOT NULL,
    queue       TEXT NOT NULL,
    minute      BIGINT NOT NULL,
    completed   BIGINT NOT NULL,
    failed      BIGINT NOT NULL,
    PRIMARY KEY (project_id, queue, minute)
);

CREATE TABLE schedules (
    id              TEXT PRIMARY KEY,
    project_id      TEXT NOT NULL REFERENCES projects(id),
    name            TEXT NOT NULL,
    cron            TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    job             TEXT NOT NULL,
    misfire         TEXT NOT NULL,
    backfill_limit  INTEGER NOT NULL,
    overlap         TEXT NOT NULL,
    paused          BOOLEAN NOT NULL,
    next_run_at     BIGINT NOT NULL,
    last_run_at     BIGINT,
    last_job_id     TEXT,
    created_at      BIGINT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE paused = FALSE;
