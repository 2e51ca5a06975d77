-- Stores key $2 (a uuid), wrapped as $3, for subject $1, unless the subject has a key or
-- is forgotten (migration 0010's trigger skips the row then, after taking the subject's
-- lock); the key's id if this stored it, no row otherwise. At READ COMMITTED only.
INSERT INTO {schema}.subject_keys (subject, key_id, wrapped)
VALUES ($1, $2, $3)
ON CONFLICT (subject) DO NOTHING
RETURNING key_id
