-- The record of every read model's migrations (read_model/mod.rs), made when the first is
-- applied; the store's own migrations are recorded apart, in es_migrations. A migration is
-- known by its read model and version; its checksum is the SHA-256 of its text, as for the
-- store's own, so that an edit after it was applied is refused.
CREATE TABLE IF NOT EXISTS {schema}.es_read_model_migrations (
    read_model text NOT NULL,
    version    integer NOT NULL,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (read_model, version)
)
