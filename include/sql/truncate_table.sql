TRUNCATE TABLE IF EXISTS {database:Identifier}.{table:Identifier};
