-- The newest event readers can be given now: the last one below the horizon (migration
-- 0005). A reader that starts after it misses nothing: events of transactions still open
-- sort after it when they commit.
SELECT position, transaction_id FROM {schema}.events
WHERE transaction_id < (SELECT {schema}.es_horizon())
ORDER BY transaction_id DESC, position DESC
LIMIT 1
