-- Rows of one load, parsed by the embedded engine from a JSON Lines file (gzip or plain) on
-- its own disk. How it reads them comes with the statement (records.EngineRead): every
-- column is read as Nullable, so a missing key or a null fails; Float64 columns are read as
-- written and cast here to row_type, so each holds the double nearest to its decimal (the
-- JSON reader's own float parsing can land one ulp away); timestamps are read as text and
-- converted by the insert, by position, into the loads table's DateTime64 column.
-- Blocks of 64Ki rows keep the engine's memory near flat as an hour grows (one block per
-- table at the default 1Mi rows); an hour's table then lands as a few parts that merge later.
INSERT INTO {database:Identifier}.{loads_table:Identifier}
SELECT
    {window_start:DateTime('UTC')},
    {load_id:UUID},
    {source_key:String},
    {source_etag:String},
    {loaded_at:DateTime64(6, 'UTC')},
    untuple(CAST(tuple(*), {row_type:String}))
FROM file({path:String}, 'JSONEachRow', {structure:String})
SETTINGS
    max_insert_block_size = 65536,
    min_insert_block_size_rows = 65536,
    min_insert_block_size_bytes = 0;
