-- The id of the key each forgetting destroyed, so that a key id the key store cannot find
-- is told apart: gone because its subject was forgotten (readers see the replacement), or
-- never here (the events were sealed with another key store, another database or schema,
-- or the keys were lost: PgKeyStore reports KeyError::UnknownKey rather than show every
-- value as forgotten, which a projection rebuilt then would keep).
--
-- NULL for a subject forgotten before it had a key, and for subjects forgotten before
-- this migration, whose key ids were not kept: keys of theirs read as unknown.
ALTER TABLE {schema}.forgotten_subjects ADD COLUMN key_id uuid UNIQUE;

-- es_forget_subject (migration 0010, which says why it is race-free), now also recording
-- the id of the key it deletes, in the same transaction: a reader's single statement sees
-- the key or its record, never neither. Its privileges are kept by the replacement.
CREATE OR REPLACE FUNCTION {schema}.es_forget_subject(p_subject text, p_by text)
RETURNS TABLE (forgotten_by text, forgotten_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    destroyed uuid;
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
    DELETE FROM {schema}.subject_keys k WHERE k.subject = p_subject
    RETURNING k.key_id INTO destroyed;
    IF destroyed IS NOT NULL THEN
        UPDATE {schema}.forgotten_subjects f SET key_id = destroyed
        WHERE f.subject = p_subject;
    END IF;
    RETURN QUERY
    SELECT f.forgotten_by, f.forgotten_at FROM {schema}.forgotten_subjects f
    WHERE f.subject = p_subject;
END
$$;
