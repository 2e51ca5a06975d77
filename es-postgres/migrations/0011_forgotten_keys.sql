-- The ids of the keys that forgetting destroyed, so that a key id the key store cannot
-- find is told apart: gone because its subject was forgotten (readers see the
-- replacement), or never here (the events were sealed with another key store, another
-- database or schema, or the keys were lost: PgKeyStore reports KeyError::UnknownKey
-- rather than show every value as forgotten, which a projection rebuilt then would keep).
-- No personal data: key ids are random.
CREATE TABLE {schema}.forgotten_keys (
    key_id       uuid PRIMARY KEY,
    forgotten_at timestamptz NOT NULL DEFAULT now()
);

-- Keys destroyed before this migration were not recorded: every key id the events' sealed
-- fields name (the envelope of es_core::personal: a top-level object with "es:personal" 1
-- and a "key") that subject_keys no longer holds is recorded now, so that those events read
-- as forgotten, as they did. Only when some subject was forgotten (else there is nothing to
-- find, and no reason to read the log).
INSERT INTO {schema}.forgotten_keys (key_id)
SELECT DISTINCT (field.value ->> 'key')::uuid
FROM {schema}.events e, jsonb_each(e.payload) AS field
WHERE EXISTS (SELECT 1 FROM {schema}.forgotten_subjects)
  AND jsonb_typeof(e.payload) = 'object'
  AND jsonb_typeof(field.value) = 'object'
  AND field.value -> 'es:personal' = '1'::jsonb
  AND jsonb_typeof(field.value -> 'key') = 'string'
  AND field.value ->> 'key' ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
  AND NOT EXISTS (SELECT 1 FROM {schema}.subject_keys k
                  WHERE k.key_id = (field.value ->> 'key')::uuid)
ON CONFLICT (key_id) DO NOTHING;

-- es_forget_subject (migration 0010, which says why it is race-free), now also recording
-- the id of the key it deletes, in the same transaction: a reader's single statement sees
-- the key or the record of its destruction, never neither. Its privileges are kept by the
-- replacement.
CREATE OR REPLACE FUNCTION {schema}.es_forget_subject(p_subject text, p_by text)
RETURNS TABLE (forgotten_by text, forgotten_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a data subject is forgotten at READ COMMITTED, not %',
            current_setting('transaction_isolation') USING ERRCODE = 'ESRC1';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('es-postgres subject key {schema}'),
                                  hashtext(p_subject));
    INSERT INTO {schema}.forgotten_subjects (subject, forgotten_by)
    VALUES (p_subject, p_by)
    ON CONFLICT (subject) DO NOTHING;
    WITH destroyed AS (
        DELETE FROM {schema}.subject_keys k WHERE k.subject = p_subject
        RETURNING k.key_id)
    INSERT INTO {schema}.forgotten_keys (key_id)
    SELECT d.key_id FROM destroyed d
    ON CONFLICT (key_id) DO NOTHING;
    RETURN QUERY
    SELECT f.forgotten_by, f.forgotten_at FROM {schema}.forgotten_subjects f
    WHERE f.subject = p_subject;
END
$$;

-- Roles granted before this migration read the record now, later ones through
-- es_grant_application (below).
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT p.grantee FROM information_schema.table_privileges p
        WHERE p.table_schema = '{schema_name}' AND p.table_name = 'forgotten_subjects'
          AND p.privilege_type = 'SELECT'
          AND p.grantee NOT IN ('PUBLIC', current_user)
    LOOP
        EXECUTE format('GRANT SELECT ON {schema}.forgotten_keys TO %I', grantee);
    END LOOP;
END
$$;

-- What running the application takes (migration 0006): 0010's grants, and the record of
-- destroyed keys.
CREATE OR REPLACE FUNCTION {schema}.es_grant_application(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', '{schema_name}', role);
    EXECUTE format('GRANT SELECT ON {schema}.events, {schema}.es_migrations TO %I', role);
    EXECUTE format(
        'GRANT INSERT (stream_id, version, event_id, event_type, schema_version, payload, '
        'correlation_id, causation_id, actor, metadata, traceparent, tags) ON {schema}.events '
        'TO %I', role);
    -- Only the stream: the time of archiving is the server's.
    EXECUTE format('GRANT SELECT, INSERT (stream_id) ON {schema}.archived_streams TO %I', role);
    -- Appends and log reads call these; granted outright rather than left to PUBLIC,
    -- which a hardened database revokes.
    EXECUTE format(
        'GRANT EXECUTE ON FUNCTION {schema}.es_stream_open(text), {schema}.es_horizon(), '
        '{schema}.es_append_if(text, bigint, uuid[], text[], int4[], jsonb[], uuid[], uuid[], '
        'text[], jsonb[], text[], text[], jsonb, text[], xid8, bigint, float8[], float8), '
        '{schema}.es_read_query_tagged(xid8, bigint, text[], jsonb, bigint), '
        '{schema}.es_notify(text) TO %I',
        role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON {schema}.snapshots TO %I', role);
    EXECUTE format(
        'GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.checkpoints, {schema}.parked_events, '
        '{schema}.leases TO %I', role);
    -- Data subjects' keys: read and stored, never replaced nor deleted but by forgetting.
    EXECUTE format('GRANT SELECT, INSERT (subject, key_id, wrapped) ON {schema}.subject_keys '
        'TO %I', role);
    EXECUTE format('GRANT SELECT ON {schema}.forgotten_subjects TO %I', role);
    EXECUTE format('GRANT SELECT ON {schema}.forgotten_keys TO %I', role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION {schema}.es_forget_subject(text, text) TO %I',
        role);
END
$$;

