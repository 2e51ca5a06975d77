-- The newest migration the schema applied (0 if none).
SELECT coalesce(max(version), 0) AS version FROM {schema}.es_migrations
