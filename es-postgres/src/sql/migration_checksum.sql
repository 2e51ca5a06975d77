-- Records checksum $2 for applied migration $1: one applied before checksums were
-- recorded, or recorded with the legacy FNV-1a fingerprint (migrate.rs).
UPDATE {schema}.es_migrations SET checksum = $2 WHERE version = $1
