-- Whether stream $1 is archived.
SELECT EXISTS (SELECT 1 FROM {schema}.archived_streams WHERE stream_id = $1)
