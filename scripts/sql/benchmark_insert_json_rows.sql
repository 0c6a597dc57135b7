-- Benchmark only: how the old projects inserted, rows sent back from Python as JSON text.
INSERT INTO {database:Identifier}.{loads_table:Identifier}
SELECT toDateTime('2024-04-11 00:00:00', 'UTC'), generateUUIDv4(), '', '', now64(6), *
FROM format(JSONEachRow, {structure:String}, {rows:String});
