-- $1 order id, $2 the new status, $3 version.
UPDATE {schema}.orders_by_status
SET status = $2, version = $3
WHERE order_id = $1 AND version < $3
