-- Rows of one load, how many of them are stamped outside the window by more than
-- {tolerance_hours}, and the range of the event time column over the others (empty strings
-- when there are none, or for a table without an event time column: pass the load's own
-- window_start column, which is always in its window).
SELECT
    count() AS rows,
    countIf(NOT in_window) AS out_of_window_rows,
    if(countIf(in_window) = 0, '', toString(minIf(event_time, in_window))) AS min_event_time,
    if(countIf(in_window) = 0, '', toString(maxIf(event_time, in_window))) AS max_event_time
FROM
(
    SELECT
        {time_column:Identifier} AS event_time,
        event_time >= window_start - toIntervalHour({tolerance_hours:UInt32})
            AND event_time < window_start + toIntervalHour(1 + {tolerance_hours:UInt32}) AS in_window
    FROM {database:Identifier}.{loads_table:Identifier}
    WHERE window_start = {window_start:DateTime('UTC')} AND load_id = {load_id:UUID}
);
