-- Up to $3 events of stream $1 from version $2 on, with the columns of `LoadRow` (row.rs):
-- the pages of a load after its first (`load_start.sql`), without the columns a load has
-- no use for.
SELECT position, transaction_id, version, event_id, event_type, schema_version, payload
FROM {schema}.events
WHERE stream_id = $1 AND version >= $2
ORDER BY version
LIMIT $3
