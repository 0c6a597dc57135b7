-- Rows of one load, read and parsed by a ClickHouse server straight from the bucket: the
-- worker sends this statement and no rows. url is '<object URL> :: <member>', so the server
-- unpacks the ZIP member itself (a server build has minizip; chdb has not, so this statement
-- cannot run on the embedded engine). There are no credentials here: the server reaches the
-- bucket with its own (a service account linked to a Yandex Managed ClickHouse cluster, or
-- endpoint credentials in the server's configuration; see the README).
-- The select list, the read (records.EngineRead) and the block sizes are those of
-- insert_loads_from_file.sql. use_hive_partitioning = 0: the keys hold
-- year=/month=/day=/hour= segments, which ClickHouse 25.8 would otherwise demand as columns.
INSERT INTO {database:Identifier}.{loads_table:Identifier}
SELECT
    {window_start:DateTime('UTC')},
    {load_id:UUID},
    {source_key:String},
    {source_etag:String},
    {loaded_at:DateTime64(6, 'UTC')},
    untuple(CAST(tuple(*), {row_type:String}))
FROM s3({url:String}, 'JSONEachRow', {structure:String})
SETTINGS
    use_hive_partitioning = 0,
    max_insert_block_size = 65536,
    min_insert_block_size_rows = 65536,
    min_insert_block_size_bytes = 0;
