-- Fewer index writes per job state change. A claim and a completion used to rewrite
-- `jobs_queue_state` (state is in its key) and a completion also inserted into
-- `jobs_finished`: four extra B-tree writes per job. Now:
-- * `jobs_queue` keys only columns that never change, so state changes never touch it;
--   it serves listing a queue's jobs newest first;
-- * `jobs_final` holds only finished jobs, so a claim never touches it and a completion
--   adds one entry; it serves retention pruning, clean and retry-all-failed.
DROP INDEX jobs_queue_state;
DROP INDEX jobs_finished;
CREATE INDEX jobs_queue ON jobs (project_id, queue, id);
CREATE INDEX jobs_final ON jobs (project_id, queue, state, finished_at) WHERE state IN ('completed', 'failed', 'cancelled');
