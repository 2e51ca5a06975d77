-- The W3C trace context (traceparent) of the span that recorded each event
-- (es_core::Metadata::traceparent), so that whoever handles the event continues the trace.
-- NULL for the events stored before and for those recorded without one. A nullable column
-- without a default is added without rewriting the table.
ALTER TABLE {schema}.events ADD COLUMN traceparent text;

-- The application role writes it with the rest of an append (migration 0006): roles
-- granted before this migration get it now, later ones through the function.
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT p.grantee FROM information_schema.column_privileges p
        WHERE p.table_schema = '{schema_name}' AND p.table_name = 'events'
          AND p.column_name = 'metadata' AND p.privilege_type = 'INSERT'
          AND p.grantee NOT IN ('PUBLIC', current_user)
    LOOP
        EXECUTE format('GRANT INSERT (traceparent) ON {schema}.events TO %I', grantee);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION {schema}.es_grant_application(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', '{schema_name}', role);
    EXECUTE format('GRANT SELECT ON {schema}.events, {schema}.es_migrations TO %I', role);
    EXECUTE format(
        'GRANT INSERT (stream_id, version, event_id, event_type, schema_version, payload, '
        'correlation_id, causation_id, actor, metadata, traceparent) ON {schema}.events TO %I',
        role);
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
