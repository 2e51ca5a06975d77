-- The snapshot of stream $1.
SELECT version, schema_version, state, taken_at FROM {schema}.snapshots WHERE stream_id = $1
