-- Archiving stream $1, step 1 of 3 (one transaction): takes the stream's lock
-- exclusively, waiting for the appends under way, which hold it shared
-- (es_stream_open, migration 0003, keys it alike).
SELECT pg_advisory_xact_lock(hashtextextended('{schema}.' || $1, 0))
