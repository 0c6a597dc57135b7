-- Rows of one load sent by the client in native blocks (server backend).
INSERT INTO {database:Identifier}.{loads_table:Identifier} VALUES;
