-- A version number above every version ever recorded and every truncate's fence: the clock
-- in microseconds, or one more than the highest recorded if that is higher. A clock-based
-- number also stays above rows left behind by a truncate that stopped after emptying
-- marts_versions.
SELECT toString(greatest(
    (SELECT max(version) + 1 FROM {database:Identifier}.marts_versions),
    (SELECT max(fence) + 1 FROM {database:Identifier}.truncations WHERE scope = 'marts'),
    toUInt64(toUnixTimestamp64Micro(now64(6, 'UTC')))
));
