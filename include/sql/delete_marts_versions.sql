-- Forget the versions up to the newly settled one: their rows need no per-hour check any
-- more (see create_mart_views.sql). Of the settled version only its settled row stays; later
-- versions stay whole.
DELETE FROM {database:Identifier}.marts_versions
WHERE version < {settled:UInt64} OR (version = {settled:UInt64} AND status != 'settled')
SETTINGS lightweight_delete_mode = 'lightweight_update';
