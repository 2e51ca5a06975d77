-- $1 the status to keep (NULL: every order), $2 at most this many rows.
SELECT order_id, customer, status, total_cents, paid_cents, version
FROM {table}
WHERE $1::text IS NULL OR status = $1
ORDER BY order_id
LIMIT $2
