-- Archiving stream $1, step 2 of 3: reads its end, which under SERIALIZABLE makes an
-- append that raced the archive a serialization failure.
SELECT coalesce(max(version), 0) FROM {schema}.events WHERE stream_id = $1
