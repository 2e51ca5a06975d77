-- Saves checkpoint $1 at position ($2, $3), replacing what it was.
INSERT INTO {schema}.checkpoints (name, position_major, position_minor) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE
SET position_major = EXCLUDED.position_major,
    position_minor = EXCLUDED.position_minor,
    updated_at = now()
