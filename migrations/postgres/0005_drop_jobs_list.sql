-- Fewer and roomier index entries per claim. A claim on PostgreSQL is not a HOT update (the
-- state it sets is in partial-index predicates), so each claimed job's new row version gets
-- an entry, under its old key, in every index whose predicate it meets.
--
-- * `jobs_list` (project_id, id) served only listing a whole project's jobs newest first,
--   yet every enqueue and every claim wrote it. Listing without a queue now reads each of
--   the project's queues newest first through `jobs_queue` and merges them (a LATERAL join
--   over `queues`).
-- * The primary key and `jobs_queue` leave room on each leaf page for those new entries
--   (fillfactor 40; the default is 90). On full pages each such insert first ran a
--   bottom-up deletion pass over the heap, which finds nothing removable while the old
--   versions are recent, then split the page. Pages already built keep their layout until
--   `REINDEX INDEX CONCURRENTLY`.
DROP INDEX jobs_list;
ALTER INDEX jobs_pkey SET (fillfactor = 40);
ALTER INDEX jobs_queue SET (fillfactor = 40);

-- The ready index keys its text columns in the "C" collation, and only the claim compares
-- them so: `jobs_queue` cannot serve a claim's walk. It could before, and did whenever the
-- statistics misjudged a queue: a queue they did not know yet (say a new one, in a table
-- whose `queue` statistics were all other queues) was estimated at one row, and each claim
-- read the whole queue through `jobs_queue` and sorted it (170 ms per claim of 1,000 with
-- 100k jobs waiting, until the next ANALYZE). Byte order is also what the runtime's claim
-- hints compare in.
DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs (project_id COLLATE "C", queue COLLATE "C", runner COLLATE "C", priority, run_at, id COLLATE "C")
    WHERE state = 'available';
