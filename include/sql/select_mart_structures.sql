-- The columns of each mart view as a file() structure ('name Type, ...'), in their order:
-- published with each snapshot for readers to declare (create_mart_snapshot_table.sql).
SELECT table, arrayStringConcat(groupArray(concat(name, ' ', type)), ', ')
FROM
(
    SELECT table, name, type
    FROM system.columns
    WHERE database = {database:String} AND table IN {marts:Array(String)}
    ORDER BY table, position
)
GROUP BY table;
