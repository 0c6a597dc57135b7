-- Benchmark only (scripts/benchmark_marts.py): background merges still running in a
-- database, so that a timed refresh does not share the machine with the merges of the
-- parts a full rebuild or the synthetic history has just written.
SELECT count() FROM system.merges WHERE database = {database:String};
