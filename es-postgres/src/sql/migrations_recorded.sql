-- The migrations the schema recorded, in order, with their checksums: read as text through
-- jsonb, so that a table from before checksums were recorded (no such column) reads too.
SELECT version, name, to_jsonb(m) ->> 'checksum' AS checksum
FROM {schema}.es_migrations m
ORDER BY version
