-- How many events of categories $3, types $4 and partition $6 of $5 (NULL for all), and of
-- streams not archived unless $7, follow ($1, $2) below the horizon.
SELECT count(*)
FROM {schema}.events
LEFT JOIN (SELECT stream_id AS archived_id FROM {schema}.archived_streams) archived
    ON archived.archived_id = stream_id
WHERE (transaction_id, position) > ($1::xid8, $2)
  AND transaction_id < (SELECT {schema}.es_horizon())
  AND ($3::text[] IS NULL OR split_part(stream_id, '-', 1) = ANY($3))
  AND ($4::text[] IS NULL OR event_type = ANY($4))
  AND ($5::int8 IS NULL OR ((hashtextextended(stream_id, 0) % $5) + $5) % $5 = $6)
  AND ($7::bool OR archived.archived_id IS NULL)
