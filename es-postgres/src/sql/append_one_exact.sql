-- append_exact.sql for one event, with plain parameters: commands mostly emit one event,
-- and this spares the server the arrays and the ordering.
INSERT INTO {schema}.events
    (stream_id, version, event_id, event_type, schema_version, payload,
     correlation_id, causation_id, actor, metadata, traceparent, tags)
SELECT $1, $2 + 1, $3, $4, $5, $6, $7, $8, $9, $10, $11,
       string_to_array($12, E'\x1f')
WHERE ($2 = 0 OR EXISTS (SELECT 1 FROM {schema}.events WHERE stream_id = $1 AND version = $2))
  AND {schema}.es_stream_open($1)
RETURNING position, transaction_id, version, recorded_at
