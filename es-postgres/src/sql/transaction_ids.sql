-- The newest transaction id stored, and the first one this server has not handed out.
-- Every transaction that committed a row this statement can see began below its snapshot's
-- xmax, so a stored id at or above it was not handed out by this server. (Comparing with
-- this transaction's own id instead would blame appends that began after it and committed
-- while it migrated.) No `max(xid8)`: PostgreSQL 14 lacks it; the primary key's order
-- gives the newest id at once.
SELECT (SELECT transaction_id FROM {schema}.events ORDER BY transaction_id DESC LIMIT 1)
           AS newest,
       pg_snapshot_xmax(pg_current_snapshot()) AS next_id
