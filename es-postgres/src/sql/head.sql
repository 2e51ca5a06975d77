-- The newest committed event's position and transaction, below the horizon or not.
SELECT position, transaction_id FROM {schema}.events
ORDER BY transaction_id DESC, position DESC
LIMIT 1
