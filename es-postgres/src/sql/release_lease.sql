-- Gives up lease $1 if owner $2 holds it.
DELETE FROM {schema}.leases WHERE name = $1 AND owner = $2
