-- Archived (soft-deleted) streams: they take no more events and reads of the global log
-- leave them out by default, but their events stay in place for the audit history.
CREATE TABLE {schema}.archived_streams (
    stream_id       text PRIMARY KEY,
    archived_at     timestamptz NOT NULL DEFAULT now()
);

-- Whether a stream takes events, asked by every append. Appends and archiving meet on an
-- advisory lock per stream: an append holds it shared until it commits, archiving takes
-- it exclusively. So archiving waits for the appends under way, and an append that comes
-- after waits for the archive and then sees it: the check below runs in a function,
-- which (being volatile) reads with a fresh snapshot taken after the lock, not the one
-- its statement started with.
CREATE FUNCTION {schema}.es_stream_open(stream text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('{schema}.' || stream, 0));
    RETURN NOT EXISTS (SELECT 1 FROM {schema}.archived_streams WHERE stream_id = stream);
END
$$;

-- Rows inserted by other means (imports) get the same clock as the store's own appends.
ALTER TABLE {schema}.events ALTER COLUMN recorded_at SET DEFAULT clock_timestamp();
