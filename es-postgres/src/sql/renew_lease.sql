-- Extends lease $1 by $3 milliseconds if owner $2 still holds it (run out or not: a lease
-- stays recorded under its holder until another takes it); a row if it did.
UPDATE {schema}.leases SET expires_at = now() + $3 * interval '1 millisecond'
WHERE name = $1 AND owner = $2
RETURNING owner
