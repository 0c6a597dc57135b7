-- The rows of marts_versions (a few: older ones are deleted once settled), for the clean-up.
SELECT toString(version), toString(status), toString(kind), arrayMap(r -> [toString(r.1), toString(r.2)], ranges)
FROM {database:Identifier}.marts_versions
ORDER BY version, status;
