-- The events parked for projection $1, in log order.
SELECT event_id, stream_id, version, position_major, position_minor, event_type,
       error, attempts, parked_at
FROM {schema}.parked_events WHERE projection = $1
ORDER BY position_major, position_minor
