-- The current version of stream $1 (0 if it holds no events).
SELECT coalesce(max(version), 0) FROM {schema}.events WHERE stream_id = $1
