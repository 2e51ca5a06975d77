-- es_append_if (migrations 0008 and 0009; 0008 says why it is race-free, what each
-- parameter is and what it raises), made cheaper on its common path without changing what
-- it decides. Privileges granted on the function are kept by the replacement.
--
-- 1. The transaction takes its id, and the marker that says its events are this batch,
--    just before the insert rather than just after it (once it holds the stream's lock,
--    which es_stream_open waits for inside the insert: an append waiting behind an
--    archive does so without an id, as before). The order the argument rests on is
--    kept: the tags are announced (shared tag locks) before the id exists, so before any
--    younger check's snapshot can list it, and nothing but the batch is written after.
--    What changes is the moment between the id and the marker, when a younger check finds
--    this transaction running but not announced, and waits for it (a pause, then a look
--    again): it was the insert's length, now it is one statement. With eight writers on
--    disjoint tags, one call in thirteen to sixteen paused; now one in two to four hundred
--    (pgbench, counted in a copy of the function). An insert the guard refuses (no rows)
--    leaves a transaction that took an id and wrote nothing: a younger check skips it or
--    waits for it, as for any transaction.
-- 2. A batch of one event, the usual decision, is inserted from the parameters' first
--    elements, without unnesting and ordering ten arrays (the path with p_expected NULL,
--    which the Decider takes; an exact version keeps the general statement).
-- 3. The lock keys of the query's tags are computed when the check first finds an older
--    transaction running, not on every call.
--
-- On pgbench (synchronous_commit off, so that flushes do not hide the function's own cost),
-- single-event calls alternated with 0009's function in one run, medians of four rounds of
-- five seconds: one client 2,330 calls/s before, 2,440 after; eight clients 3,850 before,
-- 4,830 after. With this text (the stream's lock taken first), eight clients, medians of
-- three: 3,660 before, 4,520 after.
CREATE OR REPLACE FUNCTION {schema}.es_append_if(
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
        -- Announce the batch's tags before the transaction takes its id (below, just
        -- before the insert), for the conditional appends that will wait for it: a shared
        -- lock per tag that one of its events carries it (shared, so announcers of one tag
        -- do not wait for each other), and then the lock on (marker, its id), exclusive,
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
        -- The stream's lock first, as es_stream_open takes it (which takes it again, at no
        -- cost, inside the insert): an archive holds it while it looks at the stream, and
        -- a transaction waiting for it with an id would hold back log readers and the
        -- checks of younger conditional appends meanwhile. Bounded by the session's
        -- lock_timeout, as es_stream_open's wait always was.
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('{schema}.' || p_stream, 0));
        -- Then the id, and with it the marker, before the insert (migration 0012): the
        -- tags are announced already, and the batch is all this transaction will write.
        me := pg_current_xact_id();
        -- A try: should a younger append be looking at this id right now, this one is
        -- simply not announced, and is waited for.
        IF announced IS NOT NULL THEN
            PERFORM pg_try_advisory_xact_lock(marker, (me::text::int8 % 4294967296 - 2147483648)::int4);
        END IF;
        IF p_expected IS NULL
           AND array_dims(p_ids) = '[1:1]' AND array_dims(p_types) = '[1:1]'
           AND array_dims(p_schema_versions) = '[1:1]' AND array_dims(p_payloads) = '[1:1]'
           AND array_dims(p_correlation_ids) = '[1:1]'
           AND array_dims(p_causation_ids) = '[1:1]' AND array_dims(p_actors) = '[1:1]'
           AND array_dims(p_metadata) = '[1:1]' AND array_dims(p_traceparents) = '[1:1]'
           AND array_dims(p_tags) = '[1:1]'
        THEN
            -- One event, the usual decision: the row from the parameters' first elements,
            -- without unnesting and ordering the arrays (migration 0012). Only when every
            -- array holds exactly that one element, from 1, as the store binds them: other
            -- shapes take the general statement, which refuses what does not line up.
            RETURN QUERY
            INSERT INTO {schema}.events AS ev
                (stream_id, version, event_id, event_type, schema_version, payload,
                 correlation_id, causation_id, actor, metadata, traceparent, tags)
            SELECT p_stream, cur.v + 1, p_ids[1], p_types[1], p_schema_versions[1],
                   p_payloads[1], p_correlation_ids[1], p_causation_ids[1], p_actors[1],
                   p_metadata[1], p_traceparents[1], string_to_array(p_tags[1], E'\x1f')
            FROM (SELECT coalesce(max(x.version), 0) AS v, {schema}.es_stream_open(p_stream) AS open
                  FROM {schema}.events x WHERE x.stream_id = p_stream) cur
            WHERE cur.open
            RETURNING ev.position, ev.transaction_id, ev.version, ev.recorded_at;
        ELSIF p_expected IS NULL THEN
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
    END IF;
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
                -- are dropped as they are read rather than carried to the sort, but as
                -- `IS TRUE`, which no index can answer: given the bare comparison, the
                -- generic plan also scanned the primary key for it and intersected the
                -- two, reading the whole log after the position on every check (the
                -- cost of a decision grew with the log; migration 0009).
                WITH candidates AS MATERIALIZED (
                    SELECT e.transaction_id, e.position, e.event_type, e.tags
                    FROM {schema}.events e
                    WHERE e.tags && p_any_tags AND e.tags IS NOT NULL
                      AND ((e.transaction_id, e.position)
                           > (p_after_transaction, p_after_position)) IS TRUE
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
        -- The query tags' lock keys, once, and only when an older transaction runs: most
        -- checks find none (migration 0012).
        IF query_keys IS NULL AND p_any_tags IS NOT NULL THEN
            query_keys := ARRAY(SELECT DISTINCT hashtextextended('{schema} tag ' || t, 1)
                                FROM unnest(p_any_tags) AS t);
        END IF;
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
