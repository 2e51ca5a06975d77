-- Checkpoint $1.
SELECT position_major, position_minor FROM {schema}.checkpoints WHERE name = $1
