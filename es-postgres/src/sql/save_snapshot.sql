-- Saves the snapshot of stream $1 at version $2, unless a newer one is saved.
INSERT INTO {schema}.snapshots AS old (stream_id, version, schema_version, state, taken_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (stream_id) DO UPDATE
SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
    state = EXCLUDED.state, taken_at = EXCLUDED.taken_at
WHERE old.version <= EXCLUDED.version
