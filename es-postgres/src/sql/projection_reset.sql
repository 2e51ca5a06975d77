-- Forgets the checkpoints of projection $1 for a rebuild: its own, and every partition's
-- (`name#index/count`). Only that exact shape, so that `name#v2` stays another projection.
DELETE FROM {schema}.checkpoints
WHERE name = $1
   OR (starts_with(name, $1 || '#') AND substr(name, length($1) + 2) ~ '^[0-9]+/[0-9]+$')
