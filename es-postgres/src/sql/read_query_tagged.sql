-- The next $5 events after ($1, $2), below the horizon (migration 0005; evaluated once), in
-- log order, that an item of the query $4 selects, when every item has tags: $3 is all the
-- items' tags, so the GIN index on tags (migration 0008, partial: hence `tags IS NOT NULL`
-- here) finds the candidates, and each is checked against the items: $4 is a JSON array
-- of objects with "types" and "tags", an item selecting events of one of its types (any
-- if none) that carry all its tags. Archived streams' events are included. The columns are
-- those of `EventRow` (row.rs).
--
-- The candidates come from the index alone, materialized: a plan made without the values
-- (the one a prepared statement settles on) would otherwise also scan the primary key for
-- the position, which is most of the table.
WITH items AS MATERIALIZED (
    SELECT coalesce(i.types, ARRAY[]::text[]) AS types, coalesce(i.tags, ARRAY[]::text[]) AS tags
    FROM jsonb_to_recordset($4::jsonb) AS i(types text[], tags text[])),
candidates AS MATERIALIZED (
    SELECT e.position, e.transaction_id, e.tags, e.event_type
    FROM {schema}.events e
    WHERE e.tags && $3::text[] AND e.tags IS NOT NULL),
page AS (
    SELECT c.transaction_id, c.position
    FROM candidates c
    WHERE (c.transaction_id, c.position) > ($1::xid8, $2)
      AND c.transaction_id < (SELECT {schema}.es_horizon())
      AND EXISTS (SELECT 1 FROM items
                  WHERE (cardinality(items.types) = 0 OR c.event_type = ANY (items.types))
                    AND c.tags @> items.tags)
    ORDER BY c.transaction_id, c.position
    LIMIT $5)
SELECT e.position, e.transaction_id, e.stream_id, e.version, e.event_id, e.event_type,
       e.schema_version, e.payload, e.correlation_id, e.causation_id, e.actor, e.metadata,
       e.traceparent, e.tags, e.recorded_at
FROM page
JOIN {schema}.events e ON e.transaction_id = page.transaction_id AND e.position = page.position
ORDER BY e.transaction_id, e.position
