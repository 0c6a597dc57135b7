-- Rows of one <mart>_versions table that no reader can see any more: for each rule
-- (from, to, lowest version, version after the highest), the rows of those hours and
-- versions. The rows a commit hid are deleted by the next refresh, so a reader whose query
-- began under the previous commit still finds them.
-- Written as patch parts (lightweight_delete_mode): the cost follows the rows deleted,
-- not the size of the table, and the hour filter is read through the primary key.
-- Parameters: table, rules (JSON [["from", "to", low, high], ...]).
DELETE FROM {database:Identifier}.{table:Identifier}
WHERE hour IN (
    SELECT toDateTime(arrayJoin(arrayFlatten(arrayMap(
        rule -> range(toUInt32(rule.1), toUInt32(rule.2), 3600),
        JSONExtract({rules:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\'), UInt64, UInt64))')
    ))), 'UTC')
)
AND arrayExists(
    rule -> hour >= rule.1 AND hour < rule.2 AND version >= rule.3 AND version < rule.4,
    JSONExtract({rules:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\'), UInt64, UInt64))')
)
SETTINGS lightweight_delete_mode = 'lightweight_update';
