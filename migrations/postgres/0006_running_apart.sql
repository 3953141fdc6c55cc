-- A claim writes two index entries instead of three, and a heartbeat can be a HOT update.
--
-- A claim is not a HOT update (the state it sets is in partial-index predicates), so the
-- claimed row's new version gets an entry in every index whose predicate it meets: the
-- primary key, `jobs_queue` (every state) and `jobs_leases` (running). Now:
-- * `jobs_queue` holds jobs in every state but running;
-- * `jobs_running` holds running jobs by queue, in the same key order. It replaces
--   `jobs_leases`: finding lapsed leases reads all running jobs, which a node's
--   concurrency bounds, and `lease_expires_at` is no longer in any index, so extending a
--   lease changes no indexed column.
-- Listing a queue's jobs in every state reads both newest first and merges them.
-- (SQLite updates an index only when its key or predicate columns change, so there a claim
-- never touched `jobs_queue`; it keeps the earlier indexes.)
CREATE INDEX jobs_running ON jobs (project_id, queue, id) WHERE state = 'running';
DROP INDEX jobs_leases;
CREATE INDEX jobs_idle ON jobs (project_id, queue, id) WITH (fillfactor = 40) WHERE state <> 'running';
DROP INDEX jobs_queue;
ALTER INDEX jobs_idle RENAME TO jobs_queue;
