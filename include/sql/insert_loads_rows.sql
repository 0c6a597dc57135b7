-- Rows of one load sent by the client as the external table load_rows (server backend):
-- the load metadata columns, then the source table's columns in config order.
INSERT INTO {database:Identifier}.{loads_table:Identifier}
SELECT * FROM load_rows;
