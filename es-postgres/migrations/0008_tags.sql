-- Tags (es_core::Metadata::tags): the labels queries select events by, across streams, and
-- the conditional append (es_append_if below) that a decision spanning streams makes.
--
-- NULL for an event without tags (every event stored before): a nullable column without a
-- default is added without rewriting the table, and an untagged row costs one bit of the
-- null bitmap. Tags are written sorted and without repeats, never as an empty array.
ALTER TABLE {schema}.events ADD COLUMN tags text[];

-- GIN over the tags, for `tags && ...` and `tags @> ...`. Partial, so that untagged events
-- (the ordinary appends) add no index entry: GIN would index each NULL array under a
-- placeholder key. Queries must repeat `tags IS NOT NULL` for the planner to use it.
-- Without the fast-update list: every conditional append searches the index, and a pending
-- list would make each search scan it unsorted (up to 4 MB), then make one unlucky insert
-- merge it all; tagged inserts update the tree at once instead.
-- Not built CONCURRENTLY (a migration runs in a transaction): while it is built, appends
-- to the log wait (the build holds a SHARE lock on the table), which on a large log takes a
-- while (the whole log is read, though only tagged rows are indexed). On a large log,
-- apply this migration in a quiet moment.
CREATE INDEX events_tags_idx ON {schema}.events USING gin (tags) WITH (fastupdate = off)
    WHERE tags IS NOT NULL;

-- A conditional append, in one statement: inserts the batch as append_exact.sql (with
-- p_expected) or append_any.sql (p_expected NULL) would, then makes sure that no event the
-- query selects sorts after (p_after_transaction, p_after_position) and before the batch.
-- Returns the inserted rows; none if the insert was refused (the caller classifies that),
-- and raises, rolling the insert back, if the condition fails.
--
-- Why this is race-free without locks, at READ COMMITTED (it refuses to run otherwise:
-- each statement below must take a fresh snapshot). Say another transaction T commits a
-- selected event E that sorts between the condition's position and this transaction A's
-- events. Sorting before A's events means T's id is lower than A's. Ids are handed out in
-- increasing order and A's was handed out by the insert, before the check's snapshot S: so
-- at S, T was either still running (then the check sees an older transaction running and
-- waits, looking again with a new snapshot) or over (then, if it committed, S shows E and
-- the append fails). ("Running at S" is listed in S, or at or above S's xmax: no id above
-- the newest completed one has completed, and snapshots do not list those.) Of two
-- conditional appends on each other's queries, the younger waits for the older and then
-- sees its event. Waits go from younger to older only, so they form no cycle among
-- conditional appends; a transaction older than A that waits for a lock A holds (an insert
-- into the same stream) would, so A then gives way (ESYL0) and the caller tries again as a
-- new, younger transaction.
--
-- Waiting for every older transaction would queue concurrent conditional appends behind
-- each other's commits (one WAL flush each: 8 writers on disjoint tags managed a twentieth
-- of the bare insert rate). So each conditional append announces, before the insert gives
-- it its id, that its events are this batch and which tags they carry (advisory locks,
-- below), and an older transaction that announced none of the query's tags is not waited
-- for: it cannot write a selected event. Every other older transaction (an ordinary
-- append, a projection's batch, a session of the application's) is waited for. Only a
-- transaction whose sole writes are this batch announces: one that had written before the
-- call (it has its id at entry) does not, and the store refuses (before COMMIT) an
-- announced transaction that inserted other events afterwards (an inline projection must
-- not insert events: the announcement would not show them).
--
-- The skip, step by step. A younger append Y, whose snapshot S saw the older B running,
-- skips B when (1) an exclusive try of each query tag's lock succeeds: no running
-- transaction announced one; (2) a shared try of (marker, B) fails: B still runs (only B
-- takes that key); and (3) after the tries, B is still 'in progress' (pg_xact_status).
-- (3) is needed because a commit records B's status (and takes it off the running list)
-- before it releases B's locks, one lock partition at a time: in between, B's tag lock
-- may be gone while its marker is held, so (1) and (2) pass though B has committed a
-- selected event that S does not show. A transaction still in progress after the tries
-- had released none of its locks during them, so it held its tags then, and (1) shows it
-- announced none of the query's. A skipped one that is no longer in progress is looked at
-- again with a new snapshot.
--
-- Every wait is bounded by p_wait_limit: the announcement's shared tag locks (held
-- exclusively by a younger check until it ends) under a lock_timeout set from it, and the
-- looks for older transactions by the give-up check, which also ends a look again without
-- a pause.
--
-- What the advisory locks expose and trust. They live in the cluster-wide lock table: a
-- tag's lock key (a hash of the schema and the tag) shows in pg_locks to every role, so a
-- tag from a small domain (a country, a yes/no) can be confirmed by hashing candidates;
-- do not rely on tags being secret from other database users. And the marker can be
-- forged: any session allowed pg_advisory_lock (PUBLIC by default) that holds (marker, x)
-- makes conditional appends skip waiting for transaction x, if x announced no query tag
-- (an ordinary append announces none), so that a selected event x commits can be missed.
-- The markers are not checked against their holders (that reads pg_locks, which takes
-- every lock partition, on the common path); where untrusted roles reach the database,
-- revoke EXECUTE on the advisory lock functions from PUBLIC and grant them to the
-- application role only.
--
-- p_items: the query as [{"types": [...], "tags": [...]}], an item selecting the events of
-- one of its types (any type if none) that carry all its tags. p_any_tags: every item's
-- tags together when every item has one (the index finds the candidates), NULL when some
-- item has none (the log after the position is scanned). p_tags: each event's tags joined
-- by U+001F, which no tag holds (tags have no control characters); NULL for none.
-- p_pauses: the jittered pauses between looks, drawn by the caller (es_core::Backoff),
-- used in turn and the second half again when they run out. p_wait_limit: how long in
-- seconds to wait for older transactions at most (less if the statement timeout is
-- shorter), before giving up (ESWT0) with the holder described.
--
-- Errors, by SQLSTATE: ESRC0 not at READ COMMITTED; ESCF0 the condition failed (DETAIL:
-- the first selected event as JSON: transaction_id, position, event_type); ESWT0 an older
-- transaction is still open at the limit (DETAIL: which); ESYL0 gave way to an older
-- transaction waiting for this one.
--
-- With no events (p_ids empty) it only checks: nothing written, nothing to order.
CREATE FUNCTION {schema}.es_append_if(
    p_stream text, p_expected bigint,
    p_ids uuid[], p_types text[], p_schema_versions int4[], p_payloads jsonb[],
    p_correlation_ids uuid[], p_causation_ids uuid[], p_actors text[], p_metadata jsonb[],
    p_traceparents text[], p_tags text[],
    p_items jsonb, p_any_tags text[], p_after_transaction xid8, p_after_position bigint,
    p_pauses float8[], p_wait_limit float8)
RETURNS TABLE ("position" bigint, transaction_id xid8, version bigint, recorded_at timestamptz)
LANGUAGE plpgsql VOLATILE
-- Plans made once per session: planning the check anew on every call (a custom plan for
-- each set of values) cost more than the rest of the call. The statements are written for
-- plans that do not depend on the values (see the candidates below).
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    me xid8;
    inserted bigint := 0;
    waits int := 0;
    give_up timestamptz;
    statement_limit float8;
    older xid8[];
    snapshot_xmax xid8;
    announced bigint[];
    query_keys bigint[];
    undecided xid8[];
    -- The first half of the key an announcing transaction locks (the second is its id).
    -- Per schema: a transaction announcing in one store says nothing of what it writes in
    -- another store's schema.
    marker CONSTANT int := hashtext('es-postgres conditional append {schema}');
    first_transaction xid8;
    first_position bigint;
    first_type text;
    holder text;
    look_again boolean;
    saved_lock_timeout text;
    announced_key bigint;
BEGIN
    -- The limit first: the announcement below may wait too.
    statement_limit := extract(epoch FROM current_setting('statement_timeout')::interval);
    give_up := statement_timestamp() + make_interval(secs => CASE
        WHEN statement_limit > 0 THEN least(p_wait_limit, statement_limit * 0.8)
        ELSE p_wait_limit END);
    -- A caller's own pauses are not trusted to be there: none would divide by zero below,
    -- a NULL one would not pause at all.
    IF coalesce(cardinality(array_remove(p_pauses, NULL)), 0) = 0 THEN
        p_pauses := ARRAY[0.001];
    ELSE
        p_pauses := array_remove(p_pauses, NULL);
    END IF;
    IF cardinality(p_ids) > 0 THEN
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'a conditional append runs at READ COMMITTED, not %',
                current_setting('transaction_isolation') USING ERRCODE = 'ESRC0';
        END IF;
        -- Announce the batch's tags before the insert gives the transaction its id, for
        -- the conditional appends that will wait for it (below): a shared lock per tag
        -- that one of its events carries it (shared, so announcers of one tag do not wait
        -- for each other), and after the insert the lock on (marker, its id), exclusive,
        -- that its events are this batch. A batch of many tags does not announce, and is
        -- waited for like any other writer. Nor does a transaction that already wrote
        -- (it has its id): the announcement would not show those writes.
        announced := ARRAY(SELECT DISTINCT hashtextextended('{schema} tag ' || t, 1)
                           FROM unnest(p_tags) AS e(tg),
                                unnest(string_to_array(e.tg, E'\x1f')) AS t);
        IF cardinality(announced) > 32 OR pg_current_xact_id_if_assigned() IS NOT NULL THEN
            announced := NULL;
        ELSIF EXISTS (SELECT 1 FROM unnest(announced) AS k
                      WHERE NOT pg_try_advisory_xact_lock_shared(k)) THEN
            -- A younger check holds one of the tags until it ends: wait for it, but no
            -- longer than the limit (then as for an older transaction, ESWT0).
            -- A caller that gives up closes its connection: end the wait with it, rather than
            -- commit after the caller reported a failure. Servers that cannot tell (some
            -- platforms) refuse the setting: then the wait is bounded by the limit alone.
            BEGIN
                PERFORM set_config('client_connection_check_interval', '100', true);
            EXCEPTION WHEN invalid_parameter_value THEN NULL;
            END;
            saved_lock_timeout := current_setting('lock_timeout');
            BEGIN
                -- Key by key, each wait bounded by what is left of the limit (lock_timeout
                -- applies to each lock on its own), and never longer than the session's
                -- own lock_timeout.
                FOR announced_key IN SELECT k FROM unnest(announced) AS k ORDER BY k LOOP
                    CONTINUE WHEN pg_try_advisory_xact_lock_shared(announced_key);
                    PERFORM set_config('lock_timeout', greatest(1, ceil(1000 * CASE
                        WHEN extract(epoch FROM saved_lock_timeout::interval) > 0
                        THEN least(extract(epoch FROM saved_lock_timeout::interval),
                                   extract(epoch FROM give_up - clock_timestamp()))
                        ELSE extract(epoch FROM give_up - clock_timestamp()) END))::int8::text
                        || 'ms', true);
                    PERFORM pg_advisory_xact_lock_shared(announced_key);
                END LOOP;
            EXCEPTION WHEN lock_not_available THEN
                SELECT string_agg(DISTINCT 'backend ' || l.pid, ', ') INTO holder
                FROM pg_locks l, unnest(announced) AS k
                WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock'
                  AND l.objsubid = 1 AND l.pid <> pg_backend_pid()
                  AND l.classid = oid((k >> 32) & 4294967295)
                  AND l.objid = oid(k & 4294967295);
                RAISE EXCEPTION 'an older transaction is still open' USING
                    -- The prefix tells the store this wait from the one for older ones.
                    ERRCODE = 'ESWT0', DETAIL = 'tag lock held by '
                        || coalesce('the conditional append of ' || holder,
                                    'another conditional append');
            END;
            PERFORM set_config('lock_timeout', saved_lock_timeout, true);
        END IF;
        IF p_expected IS NULL THEN
            RETURN QUERY
            INSERT INTO {schema}.events AS ev
                (stream_id, version, event_id, event_type, schema_version, payload,
                 correlation_id, causation_id, actor, metadata, traceparent, tags)
            SELECT p_stream, cur.v + e.ord, e.id, e.typ, e.sv, e.pl, e.co, e.ca, e.ac, e.md,
                   e.tp, string_to_array(e.tg, E'\x1f')
            FROM UNNEST(p_ids, p_types, p_schema_versions, p_payloads, p_correlation_ids,
                        p_causation_ids, p_actors, p_metadata, p_traceparents, p_tags)
                     WITH ORDINALITY AS e(id, typ, sv, pl, co, ca, ac, md, tp, tg, ord),
                 (SELECT coalesce(max(x.version), 0) AS v, {schema}.es_stream_open(p_stream) AS open
                  FROM {schema}.events x WHERE x.stream_id = p_stream) cur
            WHERE cur.open
            ORDER BY e.ord
            RETURNING ev.position, ev.transaction_id, ev.version, ev.recorded_at;
        ELSE
            RETURN QUERY
            INSERT INTO {schema}.events AS ev
                (stream_id, version, event_id, event_type, schema_version, payload,
                 correlation_id, causation_id, actor, metadata, traceparent, tags)
            SELECT p_stream, p_expected + e.ord, e.id, e.typ, e.sv, e.pl, e.co, e.ca, e.ac,
                   e.md, e.tp, string_to_array(e.tg, E'\x1f')
            FROM UNNEST(p_ids, p_types, p_schema_versions, p_payloads, p_correlation_ids,
                        p_causation_ids, p_actors, p_metadata, p_traceparents, p_tags)
                     WITH ORDINALITY AS e(id, typ, sv, pl, co, ca, ac, md, tp, tg, ord),
                 (SELECT {schema}.es_stream_open(p_stream) AS open OFFSET 0) guard
            WHERE (p_expected = 0 OR EXISTS (SELECT 1 FROM {schema}.events x
                                             WHERE x.stream_id = p_stream
                                               AND x.version = p_expected))
              AND guard.open
            ORDER BY e.ord
            RETURNING ev.position, ev.transaction_id, ev.version, ev.recorded_at;
        END IF;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        IF inserted = 0 THEN
            RETURN;
        END IF;
        me := pg_current_xact_id();
        -- A try: should a younger append be looking at this id right now, this one is
        -- simply not announced, and is waited for.
        IF announced IS NOT NULL THEN
            PERFORM pg_try_advisory_xact_lock(marker, (me::text::int8 % 4294967296 - 2147483648)::int4);
        END IF;
    END IF;
    query_keys := ARRAY(SELECT DISTINCT hashtextextended('{schema} tag ' || t, 1)
                        FROM unnest(p_any_tags) AS t);
    LOOP
        -- One statement, so one snapshot S for both questions: which transactions older
        -- than this one are still running, and the first selected event after the position
        -- that another transaction wrote.
        IF p_any_tags IS NOT NULL THEN
            SELECT ARRAY(
                       SELECT r FROM (
                           -- Listed running, and every id from the snapshot's xmax up: no
                           -- transaction above the newest one completed has completed, and
                           -- a snapshot does not list them.
                           SELECT x AS r FROM pg_snapshot_xip(pg_current_snapshot()) AS x
                           WHERE x < me
                           UNION ALL
                           SELECT g::text::xid8
                           FROM generate_series(
                               pg_snapshot_xmax(pg_current_snapshot())::text::int8,
                               least(coalesce(me::text::int8, 0) - 1,
                                     pg_snapshot_xmax(pg_current_snapshot())::text::int8 + 255)) AS g
                       ) ids),
                   pg_snapshot_xmax(pg_current_snapshot()),
                   m.transaction_id, m.position, m.event_type
            INTO older, snapshot_xmax, first_transaction, first_position, first_type
            FROM (SELECT 1) one
            LEFT JOIN LATERAL (
                -- The events carrying one of the tags, from the index alone: a plan made
                -- without the values would otherwise scan the primary key for the
                -- position, or read it in order hoping for an early match.
                -- The position is filtered here too, so that the heap rows before it
                -- are dropped as they are read rather than carried to the sort.
                WITH candidates AS MATERIALIZED (
                    SELECT e.transaction_id, e.position, e.event_type, e.tags
                    FROM {schema}.events e
                    WHERE e.tags && p_any_tags AND e.tags IS NOT NULL
                      AND (e.transaction_id, e.position) > (p_after_transaction, p_after_position)
                      AND e.transaction_id IS DISTINCT FROM me)
                SELECT c.transaction_id, c.position, c.event_type
                FROM candidates c
                WHERE (c.transaction_id, c.position) > (p_after_transaction, p_after_position)
                  AND EXISTS (
                      SELECT 1 FROM jsonb_to_recordset(p_items) AS i(types text[], tags text[])
                      WHERE (coalesce(cardinality(i.types), 0) = 0 OR c.event_type = ANY (i.types))
                        AND c.tags @> coalesce(i.tags, '{}'))
                ORDER BY c.transaction_id, c.position
                LIMIT 1) m ON true;
        ELSE
            SELECT ARRAY(
                       SELECT r FROM (
                           -- Listed running, and every id from the snapshot's xmax up: no
                           -- transaction above the newest one completed has completed, and
                           -- a snapshot does not list them.
                           SELECT x AS r FROM pg_snapshot_xip(pg_current_snapshot()) AS x
                           WHERE x < me
                           UNION ALL
                           SELECT g::text::xid8
                           FROM generate_series(
                               pg_snapshot_xmax(pg_current_snapshot())::text::int8,
                               least(coalesce(me::text::int8, 0) - 1,
                                     pg_snapshot_xmax(pg_current_snapshot())::text::int8 + 255)) AS g
                       ) ids),
                   pg_snapshot_xmax(pg_current_snapshot()),
                   m.transaction_id, m.position, m.event_type
            INTO older, snapshot_xmax, first_transaction, first_position, first_type
            FROM (SELECT 1) one
            LEFT JOIN LATERAL (
                SELECT e.transaction_id, e.position, e.event_type
                FROM {schema}.events e
                WHERE (e.transaction_id, e.position) > (p_after_transaction, p_after_position)
                  AND e.transaction_id IS DISTINCT FROM me
                  AND EXISTS (
                      SELECT 1 FROM jsonb_to_recordset(p_items) AS i(types text[], tags text[])
                      WHERE (coalesce(cardinality(i.types), 0) = 0 OR e.event_type = ANY (i.types))
                        AND coalesce(e.tags, '{}') @> coalesce(i.tags, '{}'))
                ORDER BY e.transaction_id, e.position
                LIMIT 1) m ON true;
        END IF;
        IF first_transaction IS NOT NULL THEN
            RAISE EXCEPTION 'the condition of a conditional append failed' USING
                ERRCODE = 'ESCF0',
                DETAIL = json_build_object('transaction_id', first_transaction::text,
                                           'position', first_position,
                                           'event_type', first_type)::text;
        END IF;
        EXIT WHEN coalesce(cardinality(older), 0) = 0;
        -- Older conditional appends whose tags hold none of the query's cannot write a
        -- selected event: when every item of the query has a tag, they need not be waited
        -- for. Told by their announcements, without reading the lock table: no other
        -- transaction may hold a query tag (an exclusive try of its lock succeeds), and
        -- the older one must hold its marker (a shared try fails: only it takes that key,
        -- and only while it runs), and still be in progress after the tries (a commit
        -- releases its locks only after it is recorded, and not all at once: see the
        -- argument at the top). An older transaction announced its tags before it had
        -- its id, so before S, and holds them until its commit is recorded: one still in
        -- progress after the tries held its tags during them. The tries keep what they took
        -- until this transaction ends, so that a younger transaction announcing a query
        -- tag meanwhile waits for this one (it takes its id after, and sorts after).
        undecided := older;
        look_again := false;
        IF p_any_tags IS NOT NULL
           -- More unlisted ids than were enumerated: wait for them.
           AND me::text::int8 - snapshot_xmax::text::int8 <= 256
           AND NOT EXISTS (SELECT 1 FROM unnest(query_keys) AS k
                           WHERE NOT pg_try_advisory_xact_lock(k))
        THEN
            undecided := ARRAY(
                SELECT x FROM unnest(older) AS x
                WHERE pg_try_advisory_xact_lock_shared(
                    marker, (x::text::int8 % 4294967296 - 2147483648)::int4));
            -- A commit marks the transaction committed (and no longer running) before it
            -- releases its locks, lock partition by partition: in between, its tag lock
            -- may be gone while its marker is still held, and a skip would miss its
            -- events. One skipped that is no longer in progress may have ended so: it is
            -- looked at again, with a new snapshot (which shows its events if it committed).
            look_again := EXISTS (
                SELECT 1 FROM unnest(older) AS x
                WHERE x <> ALL (undecided)
                  AND pg_xact_status(x) IS DISTINCT FROM 'in progress');
        END IF;
        IF NOT look_again AND me::text::int8 - snapshot_xmax::text::int8 <= 256 THEN
            EXIT WHEN cardinality(undecided) = 0;
            -- One that ended since S is looked at again, with a new snapshot, at once.
            look_again := EXISTS (SELECT 1 FROM unnest(undecided) AS x
                                  WHERE pg_xact_status(x) IS DISTINCT FROM 'in progress');
            -- Those seen running in another database cannot write here (as es_horizon).
            EXIT WHEN NOT look_again AND NOT EXISTS (
                SELECT 1 FROM unnest(undecided) AS x
                WHERE x::xid NOT IN (
                    SELECT a.backend_xid FROM pg_stat_get_activity(NULL) a
                    WHERE a.backend_xid IS NOT NULL AND a.datid IS NOT NULL
                      AND a.datid <> (SELECT oid FROM pg_database
                                      WHERE datname = current_database())
                    UNION ALL
                    SELECT p.transaction FROM pg_prepared_xacts p
                    WHERE p.database <> current_database()));
        END IF;
        -- Looked at again without a pause, but not past the limit.
        IF look_again AND clock_timestamp() < give_up THEN
            PERFORM pg_stat_clear_snapshot();
            CONTINUE;
        END IF;
        IF clock_timestamp() >= give_up THEN
            SELECT 'transaction ' || h.horizon
                   || coalesce(' of backend ' || a.pid || ' in database `' || a.datname || '`', '')
                   || coalesce(' (application `' || nullif(a.application_name, '') || '`)', '')
                   || coalesce(', ' || a.state, '')
                   || coalesce(', open for ' || (clock_timestamp() - a.xact_start), '')
                   || coalesce(' (prepared transaction `' || p.gid || '`)', '')
            INTO holder
            FROM (SELECT {schema}.es_horizon() AS horizon) h
            LEFT JOIN pg_stat_activity a ON a.backend_xid = h.horizon::xid
            LEFT JOIN pg_prepared_xacts p ON p.transaction = h.horizon::xid;
            RAISE EXCEPTION 'an older transaction is still open' USING
                ERRCODE = 'ESWT0', DETAIL = coalesce(holder, 'an older transaction');
        END IF;
        -- After a few looks, make sure the older transactions are not waiting, directly or
        -- through others, for a lock this one holds: then waiting for them never ends.
        IF waits >= 3 THEN
            IF EXISTS (
                WITH RECURSIVE chain(pid) AS (
                    -- The older ids as S had them, those at or above its xmax too (which
                    -- pg_snapshot_xip leaves out: in a quiet database, the older
                    -- transaction itself).
                    SELECT a.pid
                    FROM unnest(older) AS running
                    JOIN pg_stat_get_activity(NULL) a ON a.backend_xid = running::xid
                  UNION
                    SELECT unnest(pg_blocking_pids(chain.pid)) FROM chain)
                SELECT 1 FROM chain WHERE chain.pid = pg_backend_pid())
            THEN
                RAISE EXCEPTION 'a conditional append gives way to an older transaction waiting for it'
                    USING ERRCODE = 'ESYL0';
            END IF;
        END IF;
        IF waits = 0 THEN
            -- A caller that gives up closes its connection: end the wait with it, rather than
            -- commit after the caller reported a failure. Servers that cannot tell (some
            -- platforms) refuse the setting: then the wait is bounded by the limit alone.
            BEGIN
                PERFORM set_config('client_connection_check_interval', '100', true);
            EXCEPTION WHEN invalid_parameter_value THEN NULL;
            END;
        END IF;
        PERFORM pg_sleep(p_pauses[CASE
            WHEN waits < cardinality(p_pauses) THEN waits + 1
            ELSE cardinality(p_pauses) / 2 + 1
                 + (waits - cardinality(p_pauses)) % (cardinality(p_pauses) - cardinality(p_pauses) / 2)
            END]);
        -- Activity is read once per transaction otherwise.
        PERFORM pg_stat_clear_snapshot();
        waits := waits + 1;
    END LOOP;
END
$$;

-- The application role writes the tags with the rest of an append, and makes conditional
-- appends: roles granted before this migration get both now, later ones through the
-- function (migration 0006, as 0007 did for its column).
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT p.grantee FROM information_schema.column_privileges p
        WHERE p.table_schema = '{schema_name}' AND p.table_name = 'events'
          AND p.column_name = 'metadata' AND p.privilege_type = 'INSERT'
          AND p.grantee NOT IN ('PUBLIC', current_user)
    LOOP
        EXECUTE format('GRANT INSERT (tags) ON {schema}.events TO %I', grantee);
        EXECUTE format('GRANT EXECUTE ON FUNCTION {schema}.es_append_if(text, bigint, uuid[], '
            'text[], int4[], jsonb[], uuid[], uuid[], text[], jsonb[], text[], text[], jsonb, '
            'text[], xid8, bigint, float8[], float8) TO %I', grantee);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION {schema}.es_grant_application(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', '{schema_name}', role);
    EXECUTE format('GRANT SELECT ON {schema}.events, {schema}.es_migrations TO %I', role);
    EXECUTE format(
        'GRANT INSERT (stream_id, version, event_id, event_type, schema_version, payload, '
        'correlation_id, causation_id, actor, metadata, traceparent, tags) ON {schema}.events '
        'TO %I', role);
    -- Only the stream: the time of archiving is the server's.
    EXECUTE format('GRANT SELECT, INSERT (stream_id) ON {schema}.archived_streams TO %I', role);
    -- Appends and log reads call these; granted outright rather than left to PUBLIC,
    -- which a hardened database revokes.
    EXECUTE format(
        'GRANT EXECUTE ON FUNCTION {schema}.es_stream_open(text), {schema}.es_horizon(), '
        '{schema}.es_append_if(text, bigint, uuid[], text[], int4[], jsonb[], uuid[], uuid[], '
        'text[], jsonb[], text[], text[], jsonb, text[], xid8, bigint, float8[], float8) TO %I',
        role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON {schema}.snapshots TO %I', role);
    EXECUTE format(
        'GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.checkpoints, {schema}.parked_events, '
        '{schema}.leases TO %I', role);
END
$$;
