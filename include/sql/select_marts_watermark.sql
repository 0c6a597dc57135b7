-- How many commits the marts reflect; 0 means the marts were never built (or the raw layer
-- or the marts were reset). A count of a MergeTree table is read from part metadata.
SELECT count() FROM {database:Identifier}.marts_applied_loads;
