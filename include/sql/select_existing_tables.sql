-- Which of the named tables exist in the database.
SELECT name
FROM system.tables
WHERE database = {database:String} AND name IN {tables:Array(String)};
