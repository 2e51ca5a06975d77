-- Every consumer the runner's tables know of (a checkpoint, a lease or parked events),
-- by name: its checkpoint and when it last moved, its lease (owner, expiry, and whether
-- it is still held by the server's clock), and its parked events (how many, the newest
-- one's error and time).
WITH names AS (
    SELECT name FROM {schema}.checkpoints
    UNION SELECT name FROM {schema}.leases
    UNION SELECT projection FROM {schema}.parked_events)
SELECT n.name, c.position_major, c.position_minor, c.updated_at,
       l.owner AS lease_owner, l.expires_at AS lease_expires_at,
       coalesce(l.expires_at > now(), false) AS lease_held,
       p.parked, p.last_error, p.last_parked_at
FROM names n
LEFT JOIN {schema}.checkpoints c ON c.name = n.name
LEFT JOIN {schema}.leases l ON l.name = n.name
LEFT JOIN LATERAL (
    SELECT count(*) AS parked,
           (array_agg(error ORDER BY parked_at DESC))[1] AS last_error,
           max(parked_at) AS last_parked_at
    FROM {schema}.parked_events WHERE projection = n.name) p ON true
ORDER BY n.name
