-- Forgets checkpoint $1.
DELETE FROM {schema}.checkpoints WHERE name = $1
