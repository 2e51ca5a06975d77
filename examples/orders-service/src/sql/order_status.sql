-- $1 order id, $2 the new status, $3 version.
UPDATE {table}
SET status = $2, version = $3
WHERE order_id = $1 AND version < $3
