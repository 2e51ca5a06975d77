-- Empties the read model before a rebuild.
DELETE FROM {table}
