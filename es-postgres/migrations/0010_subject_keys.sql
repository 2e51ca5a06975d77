-- The keys of data subjects (es_core::personal, crypto-shredding: PgKeyStore in
-- es-postgres/src/keys.rs), and the record of their forgetting.
--
-- One row per subject: its key's id and the key wrapped (encrypted) by the application's
-- master key, which the database never sees. Forgetting a subject deletes its row and
-- records who asked and when, in one transaction; the record holds no personal data (the
-- subject is an identifier). Once forgotten, a subject never gets a key again, so what was
-- encrypted for it stays unreadable and nothing new is.
--
-- The application role may read and insert keys (naming only the columns a key store
-- writes: the creation time is the server's), but not update them (no one replaces a key)
-- nor delete them: it forgets through es_forget_subject, which does both halves at once,
-- and it may read the records, not write them.
--
-- Why a key cannot be stored for a subject being forgotten: the insert and the forgetting
-- take the same lock, a transaction-scoped advisory lock keyed by the subject (the
-- two-int form, which no other lock of the store uses), and each reads only after taking
-- it, at READ COMMITTED, where every statement sees what committed before it started. An
-- insert that locks first commits its key before the forgetting reads, which then deletes
-- it; one that locks second sees the record and stores nothing. The insert takes the lock
-- in a trigger, so that a key inserted by hand obeys it too. Under REPEATABLE READ a
-- statement would read on a snapshot from before the lock, so both refuse any level but
-- READ COMMITTED (ESRC1); the key store runs them in transactions of its own at that level.
CREATE TABLE {schema}.subject_keys (
    subject    text PRIMARY KEY,
    key_id     uuid UNIQUE NOT NULL,
    wrapped    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.forgotten_subjects (
    subject      text PRIMARY KEY,
    forgotten_by text NOT NULL,
    forgotten_at timestamptz NOT NULL DEFAULT now()
);

-- Before each key is stored: the subject's lock, then no key if the subject is forgotten
-- (the row is skipped: the insert stores nothing, and the key store reads the record).
-- SECURITY DEFINER, with a fixed search path, so that it takes the lock and reads the
-- records whatever the inserting role may execute.
CREATE FUNCTION {schema}.es_subject_key_guard() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a data subject''s key is stored at READ COMMITTED, not %',
            current_setting('transaction_isolation') USING ERRCODE = 'ESRC1';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('es-postgres subject key {schema}'),
                                  hashtext(NEW.subject));
    IF EXISTS (SELECT 1 FROM {schema}.forgotten_subjects f WHERE f.subject = NEW.subject) THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION {schema}.es_subject_key_guard() FROM PUBLIC;

CREATE TRIGGER subject_keys_not_forgotten BEFORE INSERT ON {schema}.subject_keys
FOR EACH ROW EXECUTE FUNCTION {schema}.es_subject_key_guard();

-- Forgets subject p_subject at the request of p_by: records it (unless it is already), and
-- deletes its key, under the subject's lock; returns the record, the first one if the
-- subject was forgotten before (a repeat changes nothing). SECURITY DEFINER: the
-- application role may not delete keys nor write records itself, only through this.
CREATE FUNCTION {schema}.es_forget_subject(p_subject text, p_by text)
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
    DELETE FROM {schema}.subject_keys k WHERE k.subject = p_subject;
    RETURN QUERY
    SELECT f.forgotten_by, f.forgotten_at FROM {schema}.forgotten_subjects f
    WHERE f.subject = p_subject;
END
$$;
REVOKE EXECUTE ON FUNCTION {schema}.es_forget_subject(text, text) FROM PUBLIC;

-- Roles granted before this migration get the key store now, later ones through
-- es_grant_application (below).
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
        EXECUTE format('GRANT SELECT, INSERT (subject, key_id, wrapped) ON '
            '{schema}.subject_keys TO %I', grantee);
        EXECUTE format('GRANT SELECT ON {schema}.forgotten_subjects TO %I', grantee);
        EXECUTE format('GRANT EXECUTE ON FUNCTION {schema}.es_forget_subject(text, text) TO %I',
            grantee);
    END LOOP;
END
$$;

-- What running the application takes (migration 0006): 0009's grants, and the key
-- store's.
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
    EXECUTE format('GRANT EXECUTE ON FUNCTION {schema}.es_forget_subject(text, text) TO %I',
        role);
END
$$;
