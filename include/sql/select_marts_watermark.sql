-- How many commits the marts reflect; 0 means the marts were never built (or were reset).
SELECT count() FROM {database:Identifier}.marts_applied_loads;
