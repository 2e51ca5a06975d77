-- Takes or renews lease $1 for owner $2 for $3 milliseconds; a row if the owner holds it
-- now (it held it already, or the lease had run out).
INSERT INTO {schema}.leases AS held (name, owner, expires_at)
VALUES ($1, $2, now() + $3 * interval '1 millisecond')
ON CONFLICT (name) DO UPDATE
SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
WHERE held.owner = EXCLUDED.owner OR held.expires_at <= now()
RETURNING owner
