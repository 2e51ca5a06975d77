-- The streams of category $1 (every category when NULL), in stream id order after $2
-- (from the first when NULL), at most $3: each with its event count, last version, when
-- its first and last events were recorded, and whether it is archived. Grouping follows
-- the unique (stream_id, version) index, so a page reads only its streams' index entries.
--
-- A category's streams are exactly the ids from `$1-` up to `$1.` in byte order: a
-- category has no `-` (StreamId splits at the first one) and `.` is the byte after `-`, so
-- `$1_x-...` and `$12-...` fall outside. That range is compared COLLATE "C" because the
-- column has the database's collation (0001_events.sql sets none), and a linguistic one
-- (glibc's en_US, say) weighs punctuation last: it sorts `order-zz` after `order.`, and
-- would leave it out. In the column's own collation only the lower bound is safe (an id
-- sorts after its prefixes in any collation), so that one is given again uncollated for
-- the index to start the scan at the category; the scan then reads on in index order,
-- filtered, until the page is full. (Were the column COLLATE "C", both bounds would be
-- index conditions as they stand.)
SELECT e.stream_id, count(*) AS events, max(e.version) AS version,
       min(e.recorded_at) AS first_recorded_at, max(e.recorded_at) AS last_recorded_at,
       bool_or(a.stream_id IS NOT NULL) AS archived
FROM {schema}.events e
LEFT JOIN {schema}.archived_streams a ON a.stream_id = e.stream_id
WHERE ($1::text IS NULL OR (e.stream_id >= $1 || '-'
                            AND e.stream_id COLLATE "C" >= $1 || '-'
                            AND e.stream_id COLLATE "C" < $1 || '.'))
  AND ($2::text IS NULL OR e.stream_id > $2)
GROUP BY e.stream_id
ORDER BY e.stream_id
LIMIT $3
