-- Rows of one load, parsed by the engine from a JSON Lines file on its own disk.
-- Every column is read as Nullable: a missing key or a null arrives as NULL, and
-- insert_null_as_default = 0 turns it into an error instead of a silent default.
INSERT INTO {database:Identifier}.{loads_table:Identifier}
SELECT
    {window_start:DateTime('UTC')},
    {load_id:UUID},
    {source_key:String},
    {source_etag:String},
    {loaded_at:DateTime64(6, 'UTC')},
    *
FROM file({path:String}, 'JSONEachRow', {structure:String})
SETTINGS insert_null_as_default = 0, input_format_allow_errors_num = 0, input_format_skip_unknown_fields = 1;
