-- The horizon, the count of committed events at or beyond it, the backend whose
-- transaction is the horizon if one still runs it (pid, database, application, state, the
-- transaction's age), and the name of the prepared transaction if it is one. Nothing is
-- named when the horizon is the next transaction id: then nothing holds it.
WITH h AS (
    SELECT (SELECT {schema}.es_horizon()) AS horizon,
           pg_snapshot_xmax(pg_current_snapshot()) AS next)
SELECT h.horizon::text AS horizon,
       (SELECT count(*) FROM {schema}.events WHERE transaction_id >= h.horizon) AS waiting,
       holder.pid, holder.datname::text AS database, holder.application_name AS application,
       holder.state, (now() - holder.xact_start)::text AS age,
       (SELECT gid FROM pg_prepared_xacts
        WHERE h.horizon < h.next AND transaction = h.horizon::xid) AS prepared
FROM h
LEFT JOIN LATERAL (
    SELECT pid, datname, application_name, state, xact_start
    FROM pg_stat_activity
    WHERE h.horizon < h.next AND backend_xid = h.horizon::xid
    LIMIT 1) holder ON true
