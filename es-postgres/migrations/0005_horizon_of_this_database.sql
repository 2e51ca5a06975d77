-- The horizon of the global log: readers deliver events of transactions below it only, so
-- that a transaction which commits late is never skipped. pg_snapshot_xmin would do, but it
-- is cluster-wide: a writing transaction in any other database of the server, or a session
-- there left idle in a transaction, would hold back this store's readers for as long as it
-- lives. So this takes the oldest transaction that was running when the calling statement's
-- snapshot was taken, leaving out only those *seen running in another database*, which
-- cannot write here. A transaction that ended between the snapshot and the look at the
-- running backends cannot be placed and still counts: the horizon may be lower than it
-- could be, never higher. Transactions without an id yet take one above the snapshot's
-- xmax when they first write, so the horizon never passes them either. Prepared (two-phase)
-- transactions have no backend: those of other databases are left out by the database
-- pg_prepared_xacts names, those of this one hold the horizon until committed or rolled
-- back. A backend with no database (a background worker) is not left out.
--
-- STABLE and in SQL, so that it sees the calling statement's snapshot; callers evaluate it
-- once per statement, as `(SELECT es_horizon())`.
CREATE FUNCTION {schema}.es_horizon() RETURNS xid8
LANGUAGE sql STABLE AS $$
    SELECT coalesce(min(running), pg_snapshot_xmax(pg_current_snapshot()))
    FROM pg_snapshot_xip(pg_current_snapshot()) AS running
    WHERE running::xid NOT IN (
        SELECT backend_xid FROM pg_stat_get_activity(NULL)
        WHERE backend_xid IS NOT NULL
          AND datid IS NOT NULL
          AND datid <> (SELECT oid FROM pg_database WHERE datname = current_database())
        UNION ALL
        SELECT transaction FROM pg_prepared_xacts WHERE database <> current_database())
$$;
