-- A refresh's snapshot of the queue: the commits it applies, and later removes from the
-- queue by load_id. Commits that land in the queue meanwhile wait for the next refresh.
-- {claimed} is named after the refresh, so refreshes never share one. Dropped by
-- drop_marts_claimed_commits.sql; a refresh that died leaves it for the clean-up of a later
-- one (collect_garbage, once it is older than twice marts.refresh_deadline_seconds).
USE {database:Identifier};

DROP TABLE IF EXISTS {claimed:Identifier};

CREATE TABLE {claimed:Identifier}
ENGINE = MergeTree
ORDER BY (window_start, table_name, load_id)
AS SELECT load_id, table_name, window_start, status, finished_at
FROM marts_pending_commits
LIMIT 1 BY load_id;
