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
