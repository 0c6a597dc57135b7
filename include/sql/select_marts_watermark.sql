-- How many commits the marts reflect; 0 means the marts were never built, or were reset
-- (a truncate of the raw layer or of the marts): rows written by versions a truncate fenced
-- off, the refreshes that were running when it came, do not count.
SELECT count()
FROM {database:Identifier}.marts_applied_loads
WHERE version > (SELECT max(fence) FROM {database:Identifier}.truncations WHERE scope = 'marts');
