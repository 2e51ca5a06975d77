-- $1 order id, $2 amount in cents, $3 version. Paid in full makes the order `paid`.
UPDATE {table}
SET paid_cents = paid_cents + $2,
    status = CASE WHEN paid_cents + $2 >= total_cents THEN 'paid' ELSE status END,
    version = $3
WHERE order_id = $1 AND version < $3
