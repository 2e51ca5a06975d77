-- Archived (soft-deleted) streams: they take no more events and reads of the global log
-- leave them out by default, but their events stay in place for the audit history.
CREATE TABLE {schema}.archived_streams (
    stream_id       text PRIMARY KEY,
    archived_at     timestamptz NOT NULL DEFAULT now()
);
