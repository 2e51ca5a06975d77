-- Why an append to stream $1 of the events with ids $2 was refused, in one round trip (a
-- lost race then costs one read here and the caller's catch-up): how many of those ids
-- are stored anywhere, whether the stream is archived, and its current version.
SELECT (SELECT count(*) FROM {schema}.events WHERE event_id = ANY($2)) AS stored,
       EXISTS (SELECT 1 FROM {schema}.archived_streams WHERE stream_id = $1) AS archived,
       (SELECT coalesce(max(version), 0) FROM {schema}.events WHERE stream_id = $1) AS version
