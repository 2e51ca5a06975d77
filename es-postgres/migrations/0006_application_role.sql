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
    EXECUTE format('GRANT SELECT, INSERT ON {schema}.archived_streams TO %I', role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON {schema}.snapshots TO %I', role);
    EXECUTE format(
        'GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.checkpoints, {schema}.parked_events, '
        '{schema}.leases TO %I', role);
END
$$;
-- Only the owner grants.
REVOKE EXECUTE ON FUNCTION {schema}.es_grant_application(name) FROM PUBLIC;
