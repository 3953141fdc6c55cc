-- Security hardening of the platform layer (issue 12).

-- Every API key carries a role: its ceiling. A key never creates or changes a user ranking
-- above it. Keys from before this migration get `admin` (they can no longer touch owners),
-- unless the audit trail shows they were made by bootstrap or the CLI (actor `system`), as a
-- new project's first key (by a credential of another project), or by a user who is an
-- active owner today: those are `owner` keys.
ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
UPDATE api_keys SET role = 'owner'
WHERE id IN (
    SELECT e.entity_id FROM audit_events e
    WHERE e.action = 'api_key.create' AND e.entity_type = 'api_key' AND e.project_id = api_keys.project_id
      AND (
        e.actor_type = 'system'
        OR (e.actor_type = 'user' AND EXISTS (
            SELECT 1 FROM users u WHERE u.id = e.actor_id AND u.project_id = e.project_id
              AND u.role = 'owner' AND u.disabled_at IS NULL))
        OR (e.actor_type IN ('user', 'api_key')
            AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = e.actor_id AND u.project_id = e.project_id)
            AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = e.actor_id AND k.project_id = e.project_id))
      )
);

-- Idempotency records belong to one principal (actor type and id, e.g. `api_key:key_…`),
-- not to the whole project: a replay is only ever answered to the credential that made the
-- first request (after its scope is checked again). Existing records are dropped: they may
-- hold plaintext secrets, which are no longer stored; a retry of a request made before the
-- upgrade runs again.
DROP TABLE idempotency_keys;
CREATE TABLE idempotency_keys (
    project_id       TEXT NOT NULL,
    principal        TEXT NOT NULL,
    idem_key         TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    state            TEXT NOT NULL,
    response_status  INTEGER,
    response_body    BLOB,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (project_id, principal, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);

-- Per-account login throttle: attempts in a row per normalised e-mail (whether or not the
-- account exists), shared by every node. Pruned hourly once quiet.
CREATE TABLE login_failures (
    email            TEXT PRIMARY KEY,
    failures         BIGINT NOT NULL,
    last_failure_at  BIGINT NOT NULL,
    locked_until     BIGINT NOT NULL
);
CREATE INDEX login_failures_last ON login_failures(last_failure_at);

-- Users belong to a project, and so does their e-mail: unique per project, not per
-- installation (one project's admin could otherwise learn which addresses another project
-- uses). SQLite cannot drop the inline UNIQUE, so the table is rebuilt (foreign keys are
-- off while migrations run; see `Db::run_migrator`).
CREATE TABLE users_new (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects(id),
    email          TEXT NOT NULL,
    name           TEXT NOT NULL DEFAULT '',
    role           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    disabled_at    BIGINT,
    UNIQUE (project_id, email)
);
INSERT INTO users_new (id, project_id, email, name, role, password_hash, created_at, disabled_at)
    SELECT id, project_id, email, name, role, password_hash, created_at, disabled_at FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
CREATE INDEX users_project ON users(project_id, id);
CREATE INDEX users_email ON users(email);
