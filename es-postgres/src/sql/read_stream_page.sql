-- Up to $3 events of stream $1 from version $2 on, with the columns of `EventRow`
-- (row.rs).
SELECT position, transaction_id, stream_id, version, event_id, event_type, schema_version,
       payload, correlation_id, causation_id, actor, metadata, traceparent, tags, recorded_at
FROM {schema}.events
WHERE stream_id = $1 AND version >= $2
ORDER BY version
LIMIT $3
