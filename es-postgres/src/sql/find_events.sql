-- The events with ids in $1, in log order.
SELECT position, transaction_id, stream_id, version, event_id, event_type, schema_version,
       payload, correlation_id, causation_id, actor, metadata, traceparent, tags, recorded_at
FROM {schema}.events WHERE event_id = ANY($1) ORDER BY position
