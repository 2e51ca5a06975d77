-- The migrations read model $1 recorded, in order of version, with their checksums.
SELECT version, name, checksum
FROM {schema}.es_read_model_migrations
WHERE read_model = $1
ORDER BY version
