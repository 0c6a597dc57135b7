-- The refresh's snapshot of the queue, dropped once its commits left the queue.
DROP TABLE IF EXISTS {database:Identifier}.marts_claimed_commits;
