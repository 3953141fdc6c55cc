-- TRUNCATE does not fire row-level triggers, so `audit_events_no_update` (BEFORE UPDATE OR
-- DELETE … FOR EACH ROW) let anyone with TRUNCATE privilege empty the trail in one statement.
-- A statement-level trigger refuses it (also when reached through TRUNCATE … CASCADE).
-- SQLite has no TRUNCATE (its "truncate optimisation" of DELETE is disabled by the DELETE
-- trigger), so this migration exists for PostgreSQL only.
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
