-- Rows of each load attempt of a table's window, under the attempt's load_id: 'started'
-- when it begins (before anything is staged, so a killed attempt stays on record), then one
-- row when it ends: 'loaded' or 'skipped', 'failed' with the error. A row with status
-- 'loaded' or 'skipped' is also the commit of that load: the raw views show a window's rows
-- only from the load whose commit row is the newest, so a single-row insert switches a
-- window atomically. finished_at is stamped by the warehouse's clock, so the order of
-- commits is the order the warehouse received them, whatever the workers' clocks say.
USE {database:Identifier};

CREATE TABLE IF NOT EXISTS ingest_log
(
    load_id UUID,
    table_name LowCardinality(String),
    window_start DateTime('UTC'),
    status LowCardinality(String),
    source_bucket String,
    source_key String,
    source_etag String,
    source_bytes UInt64,
    rows UInt64,
    min_event_time Nullable(DateTime64(6, 'UTC')),
    max_event_time Nullable(DateTime64(6, 'UTC')),
    started_at DateTime64(6, 'UTC'),
    finished_at DateTime64(6, 'UTC'),
    duration_ms UInt64,
    error String,
    dag_run_id String,
    try_number UInt32,
    -- Rows of a commit stamped outside its window by more than the tolerance: loaded as
    -- written, left out of min/max_event_time and of the marts.
    out_of_window_rows UInt64 DEFAULT 0
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (table_name, window_start, finished_at);

ALTER TABLE ingest_log ADD COLUMN IF NOT EXISTS out_of_window_rows UInt64 DEFAULT 0;

CREATE VIEW IF NOT EXISTS committed_loads AS
SELECT
    table_name,
    window_start,
    newest.1 AS load_id,
    newest.2 AS status,
    newest.3 AS rows,
    newest.4 AS min_event_time,
    newest.5 AS max_event_time,
    newest.6 AS committed_at
FROM
(
    SELECT
        table_name,
        window_start,
        argMax(
            tuple(load_id, status, rows, min_event_time, max_event_time, finished_at),
            tuple(finished_at, load_id)
        ) AS newest
    FROM ingest_log
    WHERE status IN ('loaded', 'skipped')
    GROUP BY table_name, window_start
);
