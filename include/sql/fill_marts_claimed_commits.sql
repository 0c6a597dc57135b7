-- A refresh's snapshot of the queue: the commits it applies, and later removes from the
-- queue by load_id. Commits that land in the queue meanwhile wait for the next refresh.
-- Dropped by drop_marts_claimed_commits.sql; a refresh that died leaves it for the next
-- one to replace.
USE {database:Identifier};

DROP TABLE IF EXISTS marts_claimed_commits;

CREATE TABLE marts_claimed_commits
ENGINE = MergeTree
ORDER BY (window_start, table_name, load_id)
AS SELECT load_id, table_name, window_start, status, finished_at
FROM marts_pending_commits
LIMIT 1 BY load_id;
