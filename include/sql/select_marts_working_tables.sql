-- The working tables (claimed commits, staged events) of refreshes that started more than
-- {older_than_seconds} before {now} (the warehouse's clock): a refresh gives up past marts.refresh_deadline_seconds, so at
-- twice that age such a table belongs to a refresh that died.
SELECT name
FROM system.tables
WHERE database = {database:String}
  AND (startsWith(name, 'marts_claimed_commits_') OR startsWith(name, 'marts_events_stage_'))
  AND metadata_modification_time < toDateTime({now:DateTime64(6, 'UTC')}) - toIntervalSecond({older_than_seconds:UInt64})
ORDER BY name;
