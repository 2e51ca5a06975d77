-- Appends a batch after the stream's current end, whatever it is: $1 the stream, then the
-- columns as arrays (see append_exact.sql for the columns and the archive check).
INSERT INTO {schema}.events
    (stream_id, version, event_id, event_type, schema_version, payload,
     correlation_id, causation_id, actor, metadata, traceparent, tags)
SELECT $1, cur.v + e.ord, e.id, e.typ, e.sv, e.pl, e.co, e.ca, e.ac, e.md, e.tp,
       string_to_array(e.tg, E'\x1f')
FROM UNNEST($2::uuid[], $3::text[], $4::int4[], $5::jsonb[], $6::uuid[], $7::uuid[],
            $8::text[], $9::jsonb[], $10::text[], $11::text[])
         WITH ORDINALITY AS e(id, typ, sv, pl, co, ca, ac, md, tp, tg, ord),
     (SELECT coalesce(max(version), 0) AS v, {schema}.es_stream_open($1) AS open
      FROM {schema}.events WHERE stream_id = $1) cur
WHERE cur.open
ORDER BY e.ord
RETURNING position, transaction_id, version, recorded_at
