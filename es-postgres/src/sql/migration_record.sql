-- Records migration $1, named $2, as applied from a text with checksum $3.
INSERT INTO {schema}.es_migrations (version, name, checksum) VALUES ($1, $2, $3)
