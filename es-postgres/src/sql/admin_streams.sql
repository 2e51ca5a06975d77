-- The streams of category $1 (every category when NULL), in stream id order after $2
-- (from the first when NULL), at most $3: each with its event count, last version, when
-- its first and last events were recorded, and whether it is archived. Grouping follows
-- the unique (stream_id, version) index, so a page reads only its streams' index entries.
SELECT e.stream_id, count(*) AS events, max(e.version) AS version,
       min(e.recorded_at) AS first_recorded_at, max(e.recorded_at) AS last_recorded_at,
       bool_or(a.stream_id IS NOT NULL) AS archived
FROM {schema}.events e
LEFT JOIN {schema}.archived_streams a ON a.stream_id = e.stream_id
WHERE ($1::text IS NULL OR split_part(e.stream_id, '-', 1) = $1)
  AND ($2::text IS NULL OR e.stream_id > $2)
GROUP BY e.stream_id
ORDER BY e.stream_id
LIMIT $3
