-- es_stream_open once more, for transactions under REPEATABLE READ (a role's default, say).
-- There the check after the lock reads with the snapshot the statement began with, which
-- cannot see an archive that committed while the append waited for the lock. So the
-- function also probes for the archive's row by inserting its key: a conflict with a row
-- this snapshot cannot see is a serialization failure, which the store treats as a lost
-- race (retried in a new transaction, which then sees the archive). The probe's own row
-- never lives past its subtransaction. SERIALIZABLE needs no probe: the archive reads the
-- stream's last version, which the append writes past, and PostgreSQL aborts one of the
-- two; a probe there would only add conflicts between appends to unrelated streams.
-- Under READ COMMITTED, the default, nothing changes.
CREATE OR REPLACE FUNCTION {schema}.es_stream_open(stream text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('{schema}.' || stream, 0));
    IF current_setting('transaction_isolation') = 'repeatable read' THEN
        BEGIN
            INSERT INTO {schema}.archived_streams (stream_id) VALUES (stream)
                ON CONFLICT DO NOTHING;
            RAISE EXCEPTION 'probe done';
        EXCEPTION WHEN raise_exception THEN
            NULL;
        END;
    END IF;
    RETURN NOT EXISTS (SELECT 1 FROM {schema}.archived_streams WHERE stream_id = stream);
END
$$;
