-- `jobs_list` (project_id, id) served only listing a whole project's jobs newest first, and
-- every enqueue and every deleted job wrote it. Listing without a queue now walks the
-- primary key newest first and skips other projects' jobs (an embedded database rarely
-- holds many projects).
DROP INDEX jobs_list;
