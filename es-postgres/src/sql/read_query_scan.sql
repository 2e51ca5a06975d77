-- read_query_tagged.sql for a query with an item without tags: the log after ($1, $2) is
-- scanned in order (no index can narrow it), keeping the events of types $3 (NULL when
-- some item names none) that an item of $4 selects.
WITH items AS MATERIALIZED (
    SELECT coalesce(i.types, ARRAY[]::text[]) AS types, coalesce(i.tags, ARRAY[]::text[]) AS tags
    FROM jsonb_to_recordset($4::jsonb) AS i(types text[], tags text[]))
SELECT e.position, e.transaction_id, e.stream_id, e.version, e.event_id, e.event_type,
       e.schema_version, e.payload, e.correlation_id, e.causation_id, e.actor, e.metadata,
       e.traceparent, e.tags, e.recorded_at
FROM {schema}.events e
WHERE (e.transaction_id, e.position) > ($1::xid8, $2)
  AND e.transaction_id < (SELECT {schema}.es_horizon())
  AND ($3::text[] IS NULL OR e.event_type = ANY ($3))
  AND EXISTS (SELECT 1 FROM items
              WHERE (cardinality(items.types) = 0 OR e.event_type = ANY (items.types))
                AND coalesce(e.tags, ARRAY[]::text[]) @> items.tags)
ORDER BY e.transaction_id, e.position
LIMIT $5
