-- The warehouse's clock, which stamps and orders every ingest_log row.
SELECT toString(now64(6, 'UTC'));
