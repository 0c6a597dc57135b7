-- One row per truncate fence, never emptied (a truncate must not erase its own trace).
-- A fence is a number on the marts' version scale: the refreshes that were running when the
-- truncate came have lower versions, and everything they write afterwards (their rows,
-- their commit, their watermark) stays invisible; the refreshes after it rebuild in full.
USE {database:Identifier};

CREATE TABLE IF NOT EXISTS truncations
(
    scope LowCardinality(String),
    fence UInt64,
    recorded_at DateTime64(6, 'UTC')
)
ENGINE = MergeTree
ORDER BY (scope, fence);
