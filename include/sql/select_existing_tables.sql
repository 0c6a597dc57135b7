-- Which of the named tables (a JSON array of names) exist in the database. Lists travel
-- as JSON text: chdb and clickhouse-driver do not bind array parameters alike.
SELECT name
FROM system.tables
WHERE database = {database:String} AND has(JSONExtract({tables:String}, 'Array(String)'), name);
