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
