-- $1 order id, $2 customer, $3 total in cents, $4 version. A free order is paid at once,
-- as the aggregate has it.
INSERT INTO {table} (order_id, customer, status, total_cents, paid_cents, version)
VALUES ($1, $2, CASE WHEN $3::bigint = 0 THEN 'paid' ELSE 'placed' END, $3, 0, $4)
ON CONFLICT (order_id) DO NOTHING
