-- Events a projection could not handle, set aside so that it goes on.
CREATE TABLE {schema}.parked_events (
    projection      text NOT NULL,
    event_id        uuid NOT NULL,
    stream_id       text NOT NULL,
    version         bigint NOT NULL,
    position_major  bigint NOT NULL,
    position_minor  bigint NOT NULL,
    event_type      text NOT NULL,
    error           text NOT NULL,
    attempts        integer NOT NULL,
    parked_at       timestamptz NOT NULL,
    PRIMARY KEY (projection, event_id)
);

-- Which instance runs a projection (or partition), until when.
CREATE TABLE {schema}.leases (
    name            text PRIMARY KEY,
    owner           uuid NOT NULL,
    expires_at      timestamptz NOT NULL
);
