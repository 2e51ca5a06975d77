-- Appends several batches, each to its own stream, in one statement (coalesced commits,
-- src/store/coalesce.rs): $1 the streams (distinct), $2 each one's expected version
-- (NULL for any, 0 for no stream, n for exactly n), then one entry per event: $3 the
-- index (1-based) of its append in $1, $4 its place (1-based) in that append, and the
-- columns as arrays, as append_exact.sql takes them.
--
-- Each append's guard is append_exact.sql's (version $2 exists, unless 0) or, for any,
-- append_any.sql's (after the stream's end), and each stream's archive check takes the
-- stream's shared lock as a lone append does (es_stream_open; the `appends` CTE calls a
-- volatile function, so it is evaluated once per append, never inlined). A row whose
-- (stream, version) or event id is taken, by a row committed, in flight (the insert waits
-- for its transaction, then skips or goes on) or earlier in this statement, is skipped
-- instead of failing the statement: one append's conflict must not fail the others. That
-- can leave an append with only some of its rows, which the caller refuses by rolling the
-- whole transaction back; RETURNING gives the stream of each row (RETURNING cannot name
-- the source's append index, and the streams are distinct) so that it can tell.
--
-- Rows go in in the order of $1, which the caller sorts by stream id, and in version
-- order within an append, so that two committers (other processes) take the rows' index
-- locks in the same order and do not deadlock on each other's streams.
WITH appends AS (
    SELECT a.ix, a.stream,
           coalesce(a.expected,
                    (SELECT coalesce(max(version), 0) FROM {schema}.events
                     WHERE stream_id = a.stream)) AS base
    FROM UNNEST($1::text[], $2::int8[]) WITH ORDINALITY AS a(stream, expected, ix)
    WHERE (a.expected IS NULL OR a.expected = 0
           OR EXISTS (SELECT 1 FROM {schema}.events
                      WHERE stream_id = a.stream AND version = a.expected))
      AND {schema}.es_stream_open(a.stream)
)
INSERT INTO {schema}.events
    (stream_id, version, event_id, event_type, schema_version, payload,
     correlation_id, causation_id, actor, metadata, traceparent, tags)
SELECT appends.stream, appends.base + e.nth, e.id, e.typ, e.sv, e.pl, e.co, e.ca, e.ac,
       e.md, e.tp, string_to_array(e.tg, E'\x1f')
FROM UNNEST($3::int8[], $4::int8[], $5::uuid[], $6::text[], $7::int4[], $8::jsonb[],
            $9::uuid[], $10::uuid[], $11::text[], $12::jsonb[], $13::text[], $14::text[])
         AS e(ix, nth, id, typ, sv, pl, co, ca, ac, md, tp, tg)
     JOIN appends ON appends.ix = e.ix
ORDER BY e.ix, e.nth
ON CONFLICT DO NOTHING
RETURNING stream_id, position, transaction_id, version, recorded_at
