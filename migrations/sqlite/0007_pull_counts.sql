-- Available jobs for pull workers get a counter of their own, `available:pull`, apart from
-- the other available jobs (push, and the runtime's in-process kinds). The runtime finds
-- the queues it has work in from the `available` counter alone, so queues holding only jobs
-- for pull workers, which it never runs, no longer crowd out the others (the API, the
-- dashboard and the metrics add both into `available`).
--
-- Both counters are recounted from the jobs themselves (one read of the available jobs,
-- through `jobs_ready`; the migration holds the one writer meanwhile).
DELETE FROM queue_counts WHERE state IN ('available', 'available:pull');
INSERT INTO queue_counts (project_id, queue, state, shard, n)
    SELECT project_id, queue, CASE WHEN runner = 'pull' THEN 'available:pull' ELSE 'available' END, 0, count(*)
    FROM jobs WHERE state = 'available'
    GROUP BY 1, 2, 3;
