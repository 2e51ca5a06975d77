-- How many events the current transaction inserted: before the COMMIT of a conditional
-- append that ran inline projections, which must be the batch alone (migration 0008: the
-- append's announcement covers its batch only). Binds nothing; returns `inserted`.
SELECT count(*) AS inserted FROM {schema}.events WHERE transaction_id = pg_current_xact_id()
