-- The start of an aggregate's load (`SnapshotStore::load_events`), in one round trip: a
-- row that says whether stream $1 is archived and, if $3, holds its snapshot when that is
-- past version $2 (its event_id is NULL, and so are its snapshot columns when there is
-- none), then up to $4 of the stream's events after that snapshot (or after $2), with the
-- columns of `LoadRow` (row.rs). The snapshot's version is below every event's, so one
-- ORDER BY puts that row first and the events in order (a merge of the two ordered parts).
WITH snapshot AS (
    SELECT version, schema_version, state, taken_at FROM {schema}.snapshots
    WHERE $3 AND stream_id = $1 AND version > $2
)
SELECT NULL::bigint AS position, NULL::xid8 AS transaction_id, s.version,
       NULL::uuid AS event_id, NULL::text AS event_type, s.schema_version,
       s.state AS payload, s.taken_at,
       EXISTS (SELECT 1 FROM {schema}.archived_streams a WHERE a.stream_id = $1) AS archived
FROM (SELECT) AS here LEFT JOIN snapshot s ON true
UNION ALL
(SELECT e.position, e.transaction_id, e.version, e.event_id, e.event_type,
        e.schema_version, e.payload, NULL, NULL
 FROM {schema}.events e
 WHERE e.stream_id = $1 AND e.version > coalesce((SELECT version FROM snapshot), $2)
 ORDER BY e.version
 LIMIT $4)
ORDER BY version NULLS FIRST
