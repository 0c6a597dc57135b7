-- One mart as readers in another process see it (marts.publish_snapshot): every visible row,
-- aggregate states included, written to a Native file of a new snapshot folder.
INSERT INTO FUNCTION file({path:String}, 'Native')
SELECT *
FROM {database:Identifier}.{mart:Identifier};
