-- The lease length a job was claimed with (ms), written by the claim statement itself, so
-- a heartbeat that names no `lease_ms` extends the lease by the claim's length instead of
-- a fixed default (a job claimed for ten minutes kept being cut back to 30 s). A heartbeat
-- that names one sets it for the heartbeats after it. NULL for jobs claimed before this
-- migration: their heartbeats keep the old 30 s default.
ALTER TABLE jobs ADD COLUMN lease_ms BIGINT;
