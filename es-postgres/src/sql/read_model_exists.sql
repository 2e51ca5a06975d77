-- Whether the schema has the record of read models' migrations yet (read_model/mod.rs):
-- it is made with the first read model's first migration. The quoted schema is a
-- validated plain identifier with no quote of either kind, so it is safe in the literal.
SELECT to_regclass('{schema}.es_read_model_migrations') IS NOT NULL AS present
