-- Whether the schema has its migrations table, that is whether `migrate` ever ran on it.
SELECT to_regclass('{schema}.es_migrations') IS NOT NULL AS migrated
