-- Same shape as on PostgreSQL (counters split into shards summed on read). SQLite has a
-- single writer, so it only ever writes shard 0.
CREATE TABLE queue_counts_sharded (
    project_id  TEXT NOT NULL,
    queue       TEXT NOT NULL,
    state       TEXT NOT NULL,
    shard       INTEGER NOT NULL DEFAULT 0,
    n           BIGINT NOT NULL,
    PRIMARY KEY (project_id, queue, state, shard)
);
INSERT INTO queue_counts_sharded (project_id, queue, state, shard, n)
    SELECT project_id, queue, state, 0, n FROM queue_counts;
DROP TABLE queue_counts;
ALTER TABLE queue_counts_sharded RENAME TO queue_counts;
