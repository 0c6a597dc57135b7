-- A reader's own table over one mart's file in the newest published snapshot
-- (marts.attach_snapshot), under the mart's name and with its columns: path goes through the
-- snapshot link, so every query reads the snapshot current at that moment. The structure
-- is given, not read from the file: an empty mart's file has none, and chdb 25.8 writes a
-- DateTime('UTC') column to Native as a DateTime without its zone.
CREATE DATABASE IF NOT EXISTS {database:Identifier};

CREATE OR REPLACE TABLE {database:Identifier}.{mart:Identifier} AS file({path:String}, 'Native', {structure:String});
