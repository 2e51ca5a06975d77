-- Moves checkpoint $1 to ($2, $3), but only from ($4, $5), where this instance saw it: an
-- instance that slipped past the lease finds it moved and commits nothing.
UPDATE {schema}.checkpoints
SET position_major = $2, position_minor = $3, updated_at = now()
WHERE name = $1 AND position_major = $4 AND position_minor = $5
