-- Parks event $2 for projection $1, or records another failed attempt at it.
INSERT INTO {schema}.parked_events (projection, event_id, stream_id, version,
    position_major, position_minor, event_type, error, attempts, parked_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (projection, event_id) DO UPDATE
SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, parked_at = EXCLUDED.parked_at
