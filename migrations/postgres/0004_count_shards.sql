-- Queue counters split into shards: each connection adds to its own row (its backend pid
-- modulo 64), so concurrent transactions of one queue stop queueing on one counter row's
-- lock until commit. Readers sum the shards.
ALTER TABLE queue_counts ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE queue_counts DROP CONSTRAINT queue_counts_pkey;
ALTER TABLE queue_counts ADD PRIMARY KEY (project_id, queue, state, shard);
