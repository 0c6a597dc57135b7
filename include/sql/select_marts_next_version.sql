-- A version number above every version ever recorded: the clock in microseconds, or one
-- more than the highest recorded if that is higher. A clock-based number also stays above
-- rows left behind by a truncate that stopped after emptying marts_versions.
SELECT toString(greatest(max(version) + 1, toUnixTimestamp64Micro(now64(6, 'UTC'))))
FROM {database:Identifier}.marts_versions;
