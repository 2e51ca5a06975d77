-- Appends a batch at versions $2 + 1 ...: $1 the stream, $2 the expected version, then
-- the columns as arrays, the tags of each event joined by U+001F (which no tag holds:
-- tags have no control characters), NULL for none (migration 0008). Inserts nothing (and returns no rows) unless version $2 exists
-- (or $2 is 0), so a writer that expects a version the stream has not reached cannot
-- leave a gap; a writer behind the stream hits the unique (stream, version) constraint
-- instead. Inserts nothing into an archived stream (es_stream_open, migration 0003).
--
-- The columns it names are all an append writes: the position (identity), the writing
-- transaction (pg_current_xact_id()) and the recorded time (clock_timestamp(), read as
-- each row is written, after this statement's snapshot showed the stream's previous event
-- committed, so that recorded times never go back along a stream) are the columns'
-- defaults, which a role granted only these columns cannot forge (migration 0006).
INSERT INTO {schema}.events
    (stream_id, version, event_id, event_type, schema_version, payload,
     correlation_id, causation_id, actor, metadata, traceparent, tags)
SELECT $1, $2 + e.ord, e.id, e.typ, e.sv, e.pl, e.co, e.ca, e.ac, e.md, e.tp,
       string_to_array(e.tg, E'\x1f')
FROM UNNEST($3::uuid[], $4::text[], $5::int4[], $6::jsonb[], $7::uuid[], $8::uuid[],
            $9::text[], $10::jsonb[], $11::text[], $12::text[])
         WITH ORDINALITY AS e(id, typ, sv, pl, co, ca, ac, md, tp, tg, ord),
     (SELECT {schema}.es_stream_open($1) AS open OFFSET 0) guard
WHERE ($2 = 0 OR EXISTS (SELECT 1 FROM {schema}.events WHERE stream_id = $1 AND version = $2))
  AND guard.open
ORDER BY e.ord
RETURNING position, transaction_id, version, recorded_at
