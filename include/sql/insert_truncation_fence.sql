-- A fence for {scope}: above every version recorded so far and the warehouse's clock in
-- microseconds, so it is above the version of every refresh already running.
INSERT INTO {database:Identifier}.truncations (scope, fence, recorded_at)
SELECT
    {scope:String},
    greatest(
        (SELECT max(version) + 1 FROM {database:Identifier}.marts_versions),
        (SELECT max(fence) + 1 FROM {database:Identifier}.truncations WHERE scope = {scope:String}),
        toUInt64(toUnixTimestamp64Micro(now64(6, 'UTC')))
    ),
    now64(6, 'UTC');
