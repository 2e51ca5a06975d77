//! Errors of the store's own operations, and how sqlx errors map onto es-core's.

use std::time::Duration;

use es_core::{Backoff, StoreError, StoreErrorKind};

/// Why connecting, configuring or migrating the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgStoreError {
    /// The schema name is not a plain identifier.
    #[error(transparent)]
    InvalidSchemaName(#[from] crate::schema::PgInvalidSchemaName),
    /// The server could not be reached, or the connection string is not one sqlx reads.
    ///
    /// Neither the message nor `url` holds the password: `url` is built from what sqlx's
    /// parser reads of a `postgres://` URL (user, host, port, database), without query
    /// parameters, and other text is described rather than echoed. Passwords that hold
    /// `@`, `/`, `?` or `#` belong percent-encoded in a URL; a URL whose `@` comes after
    /// its host part is not shown at all, since the part after an unencoded `/`, `?` or
    /// `#` of a password would read as the port or database.
    #[error(
        "cannot connect to PostgreSQL at {url}; is the server running? (start a local one with `pg_ctlcluster <version> main start`, or set DATABASE_URL)"
    )]
    Connect {
        /// Where the connection went, such as `postgres://app@db:5432/orders`; in
        /// parentheses, a description of a string that is not a URL sqlx reads or that
        /// cannot be shown safely.
        url: String,
        /// What sqlx reported.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed; the schema is unchanged (migrations run in one transaction).
    #[error("migrating the event store schema `{schema}` failed")]
    Migrate {
        /// The schema.
        schema: String,
        /// What sqlx reported.
        #[source]
        source: sqlx::Error,
    },
    /// The events carry transaction ids the server has not reached: the data was copied
    /// from another cluster (`pg_dump`, logical replication), whose transaction counter was
    /// further on. The global log orders events by writing transaction, so new events would
    /// sort before old ones and readers past the old ones would skip them.
    #[error(
        "events in schema `{schema}` carry transaction ids up to {newest}, ahead of this server's {current}; they were copied from another cluster, and the log's order would break (see the es-postgres docs on moving data)"
    )]
    TransactionIdsAhead {
        /// The schema.
        schema: String,
        /// The highest transaction id stored.
        newest: u64,
        /// The first transaction id this server has not handed out yet.
        current: u64,
    },
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
    /// The schema lacks migrations this code needs ([`PgEventStore::verify`]): run
    /// [`PgEventStore::migrate`] with a role that owns the schema.
    ///
    /// [`PgEventStore::verify`]: crate::PgEventStore::verify
    /// [`PgEventStore::migrate`]: crate::PgEventStore::migrate
    #[error(
        "schema `{schema}` is at version {found}, behind the {latest} this es-postgres needs; run `migrate()` with the role that owns the schema"
    )]
    SchemaBehind {
        /// The schema.
        schema: String,
        /// The newest migration it applied (0 if none, or no schema).
        found: i32,
        /// The newest this code has.
        latest: i32,
    },
    /// The current role lacks privileges the store uses ([`PgEventStore::verify`]).
    ///
    /// [`PgEventStore::verify`]: crate::PgEventStore::verify
    #[error(
        "role `{role}` lacks privileges the event store in schema `{schema}` uses: {}; have the schema's owner run `grant_application_role(\"{role}\")`",
        missing.join(", ")
    )]
    MissingPrivileges {
        /// The schema.
        schema: String,
        /// The role.
        role: String,
        /// What it lacks, as `PRIVILEGE on table`.
        missing: Vec<String>,
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
    /// A migration the schema applied has different text in this es-postgres: it was
    /// edited after release, and the schema may lack what the code now expects.
    #[error(
        "schema `{schema}` applied migration {version} (`{name}`) from a different text than this es-postgres has: the migration was edited after it was applied, so the schema may lack what this code needs; run the es-postgres release that migrated it, or migrate a new schema and move the events over"
    )]
    MigrationEdited {
        /// The schema.
        schema: String,
        /// The migration version.
        version: i32,
        /// Its name.
        name: &'static str,
    },
    /// The tables of an inline projection could not be brought up to date by
    /// [`PgEventStore::migrate`](crate::PgEventStore::migrate): its migrations were refused
    /// or failed (the source says which, and what to do). The store's own schema is
    /// migrated.
    #[error("migrating the tables of inline projection `{projection}` failed")]
    InlineProjection {
        /// The inline projection.
        projection: String,
        /// Why.
        #[source]
        source: Box<crate::projection::PgProjectionError>,
    },
}

impl PgStoreError {
    pub(crate) fn migrate(
        schema: &crate::schema::PgSchemaName,
    ) -> impl Fn(sqlx::Error) -> Self + '_ {
        move |source| Self::Migrate {
            schema: schema.to_string(),
            source,
        }
    }
}

/// The SQLSTATE code of a database error: the one place codes are read. sqlx has error
/// kinds for constraint violations only; every other class is told by its code, through
/// the named sets below (each code is written once, there).
fn sqlstate(error: &sqlx::Error) -> Option<std::borrow::Cow<'_, str>> {
    error
        .as_database_error()
        .and_then(|database| database.code())
}

/// Serialization failure (40001) or deadlock victim (40P01): the statement did nothing
/// because another transaction got in the way, and may simply run again.
fn is_serialization_code(code: &str) -> bool {
    matches!(code, "40001" | "40P01")
}

/// A deadline the server enforced: statement timeout or cancellation (57014), lock timeout
/// (55P03), the session's idle-in-transaction timeout (25P03).
fn is_deadline_code(code: &str) -> bool {
    matches!(code, "57014" | "55P03" | "25P03")
}

/// The server cannot serve the session for now: connection exceptions (class 08), the
/// server ending the session, shutting down or starting up (57P01-57P05), too many
/// connections (53300).
fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || code == "53300"
}

/// How a conditional append (`es_append_if`, migration 0008) refused, by the SQLSTATE it
/// raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConditionalRefusal {
    /// ESRC0: the transaction is not at READ COMMITTED (a session default); nothing was
    /// written. Run it in a transaction begun at READ COMMITTED.
    NotReadCommitted,
    /// ESCF0: an event the query selects follows the position; the DETAIL names it.
    ConditionFailed,
    /// ESWT0: a transaction older than the append was still open at the limit; the DETAIL
    /// names it.
    HeldBack,
    /// ESYL0: an older transaction waits for a lock the append holds; try again.
    GaveWay,
}

/// What `es_append_if` raised, if `error` is one of its refusals.
pub(crate) fn conditional_refusal(error: &sqlx::Error) -> Option<ConditionalRefusal> {
    match sqlstate(error)?.as_ref() {
        "ESRC0" => Some(ConditionalRefusal::NotReadCommitted),
        "ESCF0" => Some(ConditionalRefusal::ConditionFailed),
        "ESWT0" => Some(ConditionalRefusal::HeldBack),
        "ESYL0" => Some(ConditionalRefusal::GaveWay),
        _ => None,
    }
}

/// The DETAIL of a database error, as PostgreSQL sent it.
pub(crate) fn detail(error: &sqlx::Error) -> Option<&str> {
    error
        .as_database_error()?
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?
        .detail()
}

/// Whether the server aborted a statement as a serialization failure (SQLSTATE 40001) or a
/// deadlock victim (40P01). Under `SERIALIZABLE` isolation (a role or database default,
/// say) even a plain read can be aborted so; the statement did nothing and may simply run
/// again.
pub(crate) fn is_serialization_failure(error: &sqlx::Error) -> bool {
    sqlstate(error).is_some_and(|code| is_serialization_code(&code))
}

/// Whether the server refused a statement for lack of privilege (42501, "permission
/// denied"), or for not being the owner of what it changes.
pub(crate) fn is_insufficient_privilege(error: &sqlx::Error) -> bool {
    sqlstate(error).as_deref() == Some("42501")
}

/// Whether a statement failed because its transaction was already aborted (25P02, "current
/// transaction is aborted, commands ignored until end of transaction block"): an earlier
/// statement of the transaction failed and someone went on.
pub(crate) fn is_in_failed_transaction(error: &sqlx::Error) -> bool {
    sqlstate(error).as_deref() == Some("25P02")
}

/// Whether an append failed because another writer got in the way: it violated the
/// unique (stream, version) or event id constraint, or, under `SERIALIZABLE` or
/// `REPEATABLE READ` isolation (set on the role or database, say), the server aborted it as
/// a serialization failure or a deadlock victim. All of these are concurrency outcomes to
/// classify and retry, never raw errors.
pub(crate) fn is_write_race(error: &sqlx::Error) -> bool {
    if let Some(database) = error.as_database_error()
        && database.is_unique_violation()
    {
        return matches!(
            database.constraint(),
            Some("events_stream_version_key" | "events_event_id_key")
        );
    }
    is_serialization_failure(error)
}

/// The server did not answer within `deadline`: an I/O timeout, as a socket's read
/// timeout would report it.
pub(crate) fn no_reply(deadline: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no reply from the server within {deadline:?}"),
    ))
}

/// What kind of failure `error` is, for [`StoreError::kind`]:
///
/// - a deadline: statement timeout or cancellation (57014), lock timeout (55P03), the
///   session's idle-in-transaction timeout (25P03), no pooled connection in time, no reply
///   in time;
/// - unavailable: a lost or refused connection (I/O, TLS, protocol), the server ending the
///   session or shutting down or starting up (57P01-57P05), connection exceptions (class
///   08), too many connections (53300), or serialization failures that outlasted their
///   retries (40001, 40P01);
/// - anything else.
pub(crate) fn kind_of(error: &sqlx::Error) -> StoreErrorKind {
    match error {
        sqlx::Error::PoolTimedOut => StoreErrorKind::Timeout,
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => StoreErrorKind::Timeout,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StoreErrorKind::Unavailable,
        sqlx::Error::Database(_) => match sqlstate(error).as_deref() {
            Some(code) if is_deadline_code(code) => StoreErrorKind::Timeout,
            Some(code) if is_unavailable_code(code) || is_serialization_code(code) => {
                StoreErrorKind::Unavailable
            }
            _ => StoreErrorKind::Other,
        },
        _ => StoreErrorKind::Other,
    }
}

/// Whether a retry may cure `error`, a failure of a statement an application ran on the
/// store's pool (a read model's query, say), as opposed to a bad query or bad data, which
/// it will not. This is the store's own classification, the one behind
/// [`StoreError::kind`] and the runners' retries, so an application answers "try again"
/// (an HTTP 503, say) exactly when the store would retry:
///
/// - a deadline the server enforced: statement timeout or cancellation (SQLSTATE 57014),
///   lock timeout (55P03), the session's idle-in-transaction timeout (25P03); or one the
///   pool enforced: no connection came free in time, no reply in time;
/// - the server unavailable: a lost or refused connection (I/O, TLS, protocol), the
///   server ending the session, shutting down or starting up (57P01-57P05), connection
///   exceptions (class 08), too many connections (53300);
/// - serialization failures and deadlock victims (40001, 40P01): another transaction got
///   in the way.
///
/// Anything else is not: a refused statement, a constraint violated, a missing privilege,
/// a closed pool, a row that does not decode.
///
/// ```
/// assert!(es_postgres::is_transient(&sqlx::Error::PoolTimedOut));
/// assert!(!es_postgres::is_transient(&sqlx::Error::RowNotFound));
/// ```
pub fn is_transient(error: &sqlx::Error) -> bool {
    kind_of(error) != StoreErrorKind::Other
}

/// The kind of the first sqlx error among `error` and its sources (a handler may wrap one
/// in an error of its own), or [`StoreErrorKind::Other`] if there is none.
pub(crate) fn kind_within(error: &(dyn std::error::Error + 'static)) -> StoreErrorKind {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(sqlx) = error.downcast_ref::<sqlx::Error>() {
            return kind_of(sqlx);
        }
        current = error.source();
    }
    StoreErrorKind::Other
}

/// An sqlx failure of `operation`, as es-core's [`StoreError`], with its kind.
pub(crate) fn store_error(operation: &'static str, error: sqlx::Error) -> StoreError {
    let kind = kind_of(&error);
    StoreError::new(operation, error).with_kind(kind)
}

/// How many times a statement aborted as a serialization failure is run again.
pub(crate) const SERIALIZATION_RETRIES: u32 = 32;

/// Runs `statement` again, after a short jittered pause, while the server aborts it as a
/// serialization failure: such aborts say nothing about the data, only that another
/// transaction got in the way.
pub(crate) async fn retry_serialization_failures<T, F, Fut>(
    mut statement: F,
) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    const BACKOFF: Backoff = Backoff::new(Duration::from_micros(200), Duration::from_millis(7));
    let mut attempt = 0;
    loop {
        match statement().await {
            Err(error) if is_serialization_failure(&error) && attempt < SERIALIZATION_RETRIES => {
                attempt += 1;
                tokio::time::sleep(BACKOFF.pause(attempt)).await;
            }
            outcome => return outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database error with SQLSTATE `code`, as the server would report it.
    #[derive(Debug, thiserror::Error)]
    #[error("server error {code}")]
    struct ServerError {
        code: &'static str,
    }

    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            "server error"
        }

        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.code.into())
        }

        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }

        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn server(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerError { code }))
    }

    #[test]
    fn deadlines_and_lost_servers_are_transient_and_refusals_are_not() {
        let transient = [
            ("statement timeout", server("57014")),
            ("lock timeout", server("55P03")),
            ("idle in transaction timeout", server("25P03")),
            ("admin shutdown", server("57P01")),
            ("crash shutdown", server("57P02")),
            ("cannot connect now", server("57P03")),
            ("connection failure", server("08006")),
            ("connection exception", server("08000")),
            ("too many connections", server("53300")),
            ("serialization failure", server("40001")),
            ("deadlock", server("40P01")),
            ("pool timed out", sqlx::Error::PoolTimedOut),
            ("no reply", no_reply(Duration::from_secs(1))),
            (
                "connection reset",
                sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()),
            ),
            (
                "protocol",
                sqlx::Error::Protocol("unexpected message".into()),
            ),
        ];
        for (what, error) in &transient {
            assert!(is_transient(error), "{what} should be transient");
        }
        let permanent = [
            ("unique violation", server("23505")),
            ("insufficient privilege", server("42501")),
            ("syntax error", server("42601")),
            ("undefined table", server("42P01")),
            ("aborted transaction", server("25P02")),
            ("no row", sqlx::Error::RowNotFound),
            ("closed pool", sqlx::Error::PoolClosed),
        ];
        for (what, error) in &permanent {
            assert!(!is_transient(error), "{what} should not be transient");
        }
    }

    #[test]
    fn each_sqlstate_is_in_one_set() {
        type Set = (&'static str, fn(&str) -> bool);
        let sets: [Set; 3] = [
            ("serialization", is_serialization_code),
            ("deadline", is_deadline_code),
            ("unavailable", is_unavailable_code),
        ];
        let cases = [
            ("40001", "serialization"),
            ("40P01", "serialization"),
            ("57014", "deadline"),
            ("55P03", "deadline"),
            ("25P03", "deadline"),
            ("08006", "unavailable"),
            ("57P01", "unavailable"),
            ("53300", "unavailable"),
            ("23505", ""),
            ("25P02", ""),
        ];
        for (code, set) in cases {
            let matching: Vec<&str> = sets
                .iter()
                .filter(|(_, is)| is(code))
                .map(|(name, _)| *name)
                .collect();
            let expected: Vec<&str> = [set].into_iter().filter(|s| !s.is_empty()).collect();
            assert_eq!(matching, expected, "{code}");
        }
    }
}
