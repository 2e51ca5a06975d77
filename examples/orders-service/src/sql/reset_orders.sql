-- Empties the read model before a rebuild.
DELETE FROM {schema}.orders_by_status
