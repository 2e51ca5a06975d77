//! Errors of the store's own operations, and how sqlx errors map onto es-core's.

use es_core::StoreError;

/// Why connecting, configuring or migrating the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgStoreError {
    /// The schema name is not a plain identifier.
    #[error(transparent)]
    InvalidSchemaName(#[from] crate::schema::InvalidSchemaName),
    /// The server could not be reached.
    #[error(
        "cannot connect to PostgreSQL at {url}; is the server running? (start a local one with `pg_ctlcluster <version> main start`, or set DATABASE_URL)"
    )]
    Connect {
        /// The URL tried, without its password.
        url: String,
        /// What sqlx reported.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed; the schema is unchanged (migrations run in one transaction).
    #[error("migrating the event store schema failed")]
    Migrate(#[source] sqlx::Error),
    /// The schema was migrated by a newer version of es-postgres.
    #[error(
        "schema `{schema}` is at version {found}, newer than the {supported} this es-postgres knows; upgrade es-postgres"
    )]
    SchemaTooNew {
        /// The schema.
        schema: String,
        /// Its version.
        found: i32,
        /// The newest this code knows.
        supported: i32,
    },
    /// A recorded migration is not the one this code has under that version.
    #[error(
        "schema `{schema}` recorded migration {version} as `{found}`, but this es-postgres has `{expected}` there"
    )]
    MigrationMismatch {
        /// The schema.
        schema: String,
        /// The migration version.
        version: i32,
        /// What this code calls it.
        expected: &'static str,
        /// What the database recorded.
        found: String,
    },
}

impl PgStoreError {
    pub(crate) fn migrate(source: sqlx::Error) -> Self {
        Self::Migrate(source)
    }
}

/// The unique constraint a database error violated, if it is a unique violation.
pub(crate) fn violated_unique_constraint(error: &sqlx::Error) -> Option<UniqueConstraint> {
    let database = error.as_database_error()?;
    if !database.is_unique_violation() {
        return None;
    }
    Some(match database.constraint() {
        Some("events_stream_version_key") => UniqueConstraint::StreamVersion,
        Some("events_event_id_key") => UniqueConstraint::EventId,
        _ => UniqueConstraint::Other,
    })
}

/// The unique constraints of the events table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UniqueConstraint {
    /// (stream_id, version): another writer stored this version first.
    StreamVersion,
    /// event_id: this event is stored already.
    EventId,
    /// Something else.
    Other,
}

/// Whether an error is a lost or refused connection, which a retry on a fresh connection
/// may cure (as opposed to a bad query or bad data, which it will not).
///
/// sqlx has no error kind for "the server closed the connection", so this also looks at
/// the SQLSTATE class: 08 (connection exception) and 57P0x (the server or an administrator
/// ended the session, e.g. `pg_terminate_backend`).
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => database
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// An sqlx failure of `operation`, as es-core's [`StoreError`].
pub(crate) fn store_error(operation: &'static str, error: sqlx::Error) -> StoreError {
    StoreError::new(operation, error)
}
