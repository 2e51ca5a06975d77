-- Grants an application role what running the store takes, and nothing more (called by
-- PgEventStore::grant_application_role, as the schema's owner).
--
-- The event log is append-only for it: it may read events and insert them, naming only the
-- columns an append writes. Position, transaction id and recorded time are left to the
-- server (identity, pg_current_xact_id(), clock_timestamp()), so the role cannot backdate
-- an event, place it before others, or hide it behind a transaction id from the future;
-- it cannot update, delete or truncate history, nor un-archive a stream. The other tables
-- hold state the store rewrites as it works (snapshots, checkpoints, parked events,
-- leases). It cannot change the schema: migrations stay with the owner.
CREATE FUNCTION {schema}.es_grant_application(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', '{schema_name}', role);
    EXECUTE format('GRANT SELECT ON {schema}.events, {schema}.es_migrations TO %I', role);
    EXECUTE format(
        'GRANT INSERT (stream_id, version, event_id, event_type, schema_version, payload, '
        'correlation_id, causation_id, actor, metadata) ON {schema}.events TO %I', role);
    -- Only the stream: the time of archiving is the server's.
    EXECUTE format('GRANT SELECT, INSERT (stream_id) ON {schema}.archived_streams TO %I', role);
    -- Appends and log reads call these; granted outright rather than left to PUBLIC,
    -- which a hardened database revokes.
    EXECUTE format(
        'GRANT EXECUTE ON FUNCTION {schema}.es_stream_open(text), {schema}.es_horizon() TO %I',
        role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON {schema}.snapshots TO %I', role);
    EXECUTE format(
        'GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.checkpoints, {schema}.parked_events, '
        '{schema}.leases TO %I', role);
END
$$;
-- Only the owner grants.
REVOKE EXECUTE ON FUNCTION {schema}.es_grant_application(name) FROM PUBLIC;

-- A schema version the store never writes (it keeps u32 values up to i32::MAX), refused
-- from anyone who inserts rows by hand; rows already stored are not checked again.
ALTER TABLE {schema}.events
    ADD CONSTRAINT events_schema_version_not_negative CHECK (schema_version >= 0) NOT VALID;
