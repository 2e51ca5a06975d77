-- Archiving stream $1, step 3 of 3: records the archive.
INSERT INTO {schema}.archived_streams (stream_id) VALUES ($1)
ON CONFLICT (stream_id) DO NOTHING
