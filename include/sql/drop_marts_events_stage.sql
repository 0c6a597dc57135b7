-- The refresh's working table, dropped once every mart is swapped.
DROP TABLE IF EXISTS {database:Identifier}.marts_events_stage;
