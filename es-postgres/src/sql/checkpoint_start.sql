-- Records checkpoint $1 at ($2, $3) for an instance that saw none, unless another instance
-- recorded one first.
INSERT INTO {schema}.checkpoints (name, position_major, position_minor) VALUES ($1, $2, $3)
ON CONFLICT (name) DO NOTHING
