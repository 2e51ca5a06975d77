-- Records migration $2 of read model $1, named $3, as applied from a text with checksum $4.
INSERT INTO {schema}.es_read_model_migrations (read_model, version, name, checksum)
VALUES ($1, $2, $3, $4)
