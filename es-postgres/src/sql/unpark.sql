-- Unparks event $2 of projection $1.
DELETE FROM {schema}.parked_events WHERE projection = $1 AND event_id = $2
