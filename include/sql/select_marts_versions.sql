-- The rows of marts_versions (a few: older ones are deleted once settled), for the clean-up,
-- each with its age in seconds at {now} (the warehouse's clock).
SELECT
    toString(version),
    toString(status),
    toString(kind),
    arrayMap(r -> [toString(r.1), toString(r.2)], ranges),
    dateDiff('second', recorded_at, {now:DateTime64(6, 'UTC')})
FROM {database:Identifier}.marts_versions
ORDER BY version, status;
