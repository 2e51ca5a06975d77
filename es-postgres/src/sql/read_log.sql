-- The next $5 events of the global log after ($1, $2), below the horizon (migration
-- 0005; evaluated once), in log order, each with whether it is of categories $3, types $4
-- and partition $7 of $6 (NULL for all), and of a stream not archived unless $8. Rows not
-- selected come without payload and metadata: they are there so that the reader moves
-- past them instead of scanning them again.
--
-- The archived streams are joined to the page's rows, so that the server hashes them or
-- probes their index for each row, whichever the table's size makes cheaper.
WITH page AS (
    SELECT * FROM {schema}.events
    WHERE (transaction_id, position) > ($1::xid8, $2)
      AND transaction_id < (SELECT {schema}.es_horizon())
    ORDER BY transaction_id, position
    LIMIT $5),
marked AS (
    SELECT page.*,
        ($3::text[] IS NULL OR split_part(stream_id, '-', 1) = ANY($3))
        AND ($4::text[] IS NULL OR event_type = ANY($4))
        AND ($6::int8 IS NULL OR ((hashtextextended(stream_id, 0) % $6) + $6) % $6 = $7)
        AND ($8::bool OR archived.archived_id IS NULL) AS selected
    FROM page
    LEFT JOIN (SELECT stream_id AS archived_id FROM {schema}.archived_streams) archived
        ON archived.archived_id = stream_id)
SELECT position, transaction_id, stream_id, version, event_id, event_type, schema_version,
       CASE WHEN selected THEN payload END AS payload, correlation_id, causation_id, actor,
       CASE WHEN selected THEN metadata END AS metadata,
       CASE WHEN selected THEN traceparent END AS traceparent,
       CASE WHEN selected THEN tags END AS tags, recorded_at, selected
FROM marked
ORDER BY transaction_id, position
