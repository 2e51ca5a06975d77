-- The next $5 events after ($1, $2), below the horizon, in log order, that an item of the
-- query $4 selects, when every item has tags ($3: all the items' tags, which the GIN index
-- on tags finds the candidates by). A function (migration 0009, which says why and what
-- each parameter is), so that the server plans it once per session. The columns are those
-- of `EventRow` (row.rs).
SELECT position, transaction_id, stream_id, version, event_id, event_type, schema_version,
       payload, correlation_id, causation_id, actor, metadata, traceparent, tags, recorded_at
FROM {schema}.es_read_query_tagged($1, $2, $3, $4, $5)
