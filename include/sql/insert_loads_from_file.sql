-- Rows of one load, parsed by the engine from a JSON Lines file on its own disk.
-- Every column is read as Nullable: a missing key or a null arrives as NULL, and
-- insert_null_as_default = 0 turns it into an error instead of a silent default.
-- Blocks of 64Ki rows keep the engine's memory near flat as an hour grows (one block per
-- table at the default 1Mi rows); an hour's table then lands as a few parts that merge later.
INSERT INTO {database:Identifier}.{loads_table:Identifier}
SELECT
    {window_start:DateTime('UTC')},
    {load_id:UUID},
    {source_key:String},
    {source_etag:String},
    {loaded_at:DateTime64(6, 'UTC')},
    *
FROM file({path:String}, 'JSONEachRow', {structure:String})
SETTINGS
    insert_null_as_default = 0,
    input_format_allow_errors_num = 0,
    input_format_skip_unknown_fields = 1,
    max_insert_block_size = 65536,
    min_insert_block_size_rows = 65536,
    min_insert_block_size_bytes = 0;
