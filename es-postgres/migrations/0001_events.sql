-- The event log: one row per event, in every stream.
CREATE TABLE {schema}.events (
    -- Sequence number, taken at insert; with transaction_id it orders the global log.
    position        bigint GENERATED ALWAYS AS IDENTITY,
    -- The writing transaction. Readers of the global log order by (transaction_id, position)
    -- and stop below the oldest transaction still running, so a late commit is never skipped.
    transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    stream_id       text NOT NULL,
    version         bigint NOT NULL,
    event_id        uuid NOT NULL,
    event_type      text NOT NULL,
    schema_version  integer NOT NULL,
    payload         jsonb NOT NULL,
    -- The common metadata has columns of its own: cheaper to write and read than JSON,
    -- and indexable for audit queries.
    correlation_id  uuid,
    causation_id    uuid,
    actor           text,
    -- Free-form application metadata.
    metadata        jsonb NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- The global log's order doubles as the primary key, saving an index per insert.
    CONSTRAINT events_pkey PRIMARY KEY (transaction_id, position),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    -- Optimistic concurrency: two writers cannot both store version n of a stream.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version),
    CONSTRAINT events_version_positive CHECK (version > 0)
);

-- The newest snapshot of each aggregate.
CREATE TABLE {schema}.snapshots (
    stream_id       text PRIMARY KEY,
    version         bigint NOT NULL,
    schema_version  integer NOT NULL,
    state           jsonb NOT NULL,
    taken_at        timestamptz NOT NULL
);

-- The last log position each named consumer handled.
CREATE TABLE {schema}.checkpoints (
    name            text PRIMARY KEY,
    position_major  bigint NOT NULL,
    position_minor  bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
