-- Rows of one load and the range of its event time column (empty strings for a table
-- without one: pass the load's own window_start column, which is never null).
SELECT
    count() AS rows,
    if(count() = 0, '', toString(min({time_column:Identifier}))) AS min_event_time,
    if(count() = 0, '', toString(max({time_column:Identifier}))) AS max_event_time
FROM {database:Identifier}.{loads_table:Identifier}
WHERE window_start = {window_start:DateTime('UTC')} AND load_id = {load_id:UUID};
