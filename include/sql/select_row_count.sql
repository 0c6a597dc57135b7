SELECT count() FROM {database:Identifier}.{table:Identifier};
