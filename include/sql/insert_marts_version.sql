-- One row of a version's life (status started, committed or settled; see create_marts.sql).
-- A single-row INSERT is atomic: the committed row makes the version's rows of all five
-- marts visible at once.
INSERT INTO {database:Identifier}.marts_versions (version, status, kind, ranges, commits, recorded_at)
SELECT
    {version:UInt64},
    {status:String},
    {kind:String},
    JSONExtract({ranges:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\')))'),
    {commits:UInt64},
    now64(6, 'UTC');
