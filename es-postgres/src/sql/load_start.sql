-- The start of an aggregate's load (`SnapshotStore::load_events`), in one round trip: a
-- row that says whether stream $1 is archived and, if $3, holds its snapshot when that is
-- past version $2 (its event_id is NULL, and so are its snapshot columns when there is
-- none), then up to $4 of the stream's events after that snapshot (or after $2), with the
-- columns of `LoadRow` (row.rs). No ORDER BY over the union: PostgreSQL 15 would sort the
-- whole page before sending its first row. A non-parallel Append (a LIMITed subquery
-- cannot be split among workers) returns its parts in order, the subquery's rows in its
-- own order; and the reader's caller refuses a load whose first row is not the start, or
-- that starts twice, so an order it did not expect fails loudly rather than silently.
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
