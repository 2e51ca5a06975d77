-- append_any.sql for one event, with plain parameters.
INSERT INTO {schema}.events
    (stream_id, version, event_id, event_type, schema_version, payload,
     correlation_id, causation_id, actor, metadata, traceparent, tags)
SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
       string_to_array($11, E'\x1f')
FROM {schema}.events WHERE stream_id = $1
HAVING {schema}.es_stream_open($1)
RETURNING position, transaction_id, version, recorded_at
