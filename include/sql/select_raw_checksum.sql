-- Rows and an order-independent checksum of a raw table's committed data, per window.
-- The load's own identity (load_id, loaded_at) is left out: reloading the same object
-- must give the same checksum.
SELECT
    toString(window_start) AS window_start,
    count() AS rows,
    toString(groupBitXor(cityHash64(*))) AS checksum
FROM
(
    SELECT * EXCEPT (load_id, loaded_at)
    FROM {database:Identifier}.{table:Identifier}
)
GROUP BY window_start
ORDER BY window_start;
