//! Why a command failed ([`CliError`]), and the exit code each failure gives.

use std::process::ExitCode;

use es_core::error::display_chain;

/// Why an `es` command failed. Each is printed as one line on standard error (the cause
/// chain joined by `: `), never with a password, and ends the process with a non-zero
/// [exit code](CliError::exit_code).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// No database was named.
    #[error("no database to connect to: set DATABASE_URL or pass --database-url")]
    NoDatabase,
    /// Connecting failed, or the URL or schema name is not valid. The message names the
    /// server without the password (es-postgres redacts it).
    #[error(transparent)]
    Connect(es_postgres::PgStoreError),
    /// The schema holds no event store.
    #[error(
        "schema `{schema}` holds no event store (it was never migrated): run `es migrate`, or pass the right --schema"
    )]
    NotMigrated {
        /// The schema.
        schema: String,
    },
    /// The schema lacks migrations this `es` needs (also what `es migrate --check`
    /// reports, with [`EXIT_BEHIND`]).
    #[error(
        "schema `{schema}` is at version {applied}, behind the {latest} this es needs: run `es migrate`"
    )]
    SchemaBehind {
        /// The schema.
        schema: String,
        /// The newest migration it applied.
        applied: i32,
        /// The newest this `es` has.
        latest: i32,
    },
    /// The schema was migrated by a newer es-postgres than this `es` was built with.
    #[error(
        "schema `{schema}` is at version {applied}, newer than the {latest} this es knows: use an es built with a newer es-postgres"
    )]
    SchemaTooNew {
        /// The schema.
        schema: String,
        /// The newest migration it applied.
        applied: i32,
        /// The newest this `es` has.
        latest: i32,
    },
    /// A migration or the schema check failed.
    #[error(transparent)]
    Migrate(es_postgres::PgStoreError),
    /// The stream has no events.
    #[error("no stream `{stream}` (it has no events); `es streams` lists the streams")]
    UnknownStream {
        /// The stream asked for.
        stream: String,
    },
    /// The text is not a stream id.
    #[error("`{text}` is not a stream id (expected `category-id`)")]
    InvalidStream {
        /// The text given.
        text: String,
        /// Why.
        #[source]
        source: es_core::StreamIdError,
    },
    /// Neither the store's tables nor the application know of this projection.
    #[error(
        "no projection `{name}`: it has no checkpoint, lease or parked events, and the application registers {registered}; `es projections` lists them"
    )]
    UnknownProjection {
        /// The name asked for.
        name: String,
        /// The names registered, as a phrase.
        registered: String,
    },
    /// The command runs the projection's code, which this binary does not have.
    #[error(
        "projection `{name}` is not registered in this binary, and {action} runs its code: run the command from your application's own binary, which embeds `es_cli::App::new().projection(...)` (see the es-cli docs){hint}"
    )]
    NotRegistered {
        /// The projection.
        name: String,
        /// What was asked (`rebuild`, `reset`, `parked retry`).
        action: &'static str,
        /// What else may help.
        hint: &'static str,
    },
    /// The event is not parked for the projection.
    #[error(
        "event {event_id} is not parked for projection `{projection}`; `es parked {projection}` lists its parked events"
    )]
    NotParked {
        /// The projection.
        projection: String,
        /// The event.
        event_id: uuid::Uuid,
    },
    /// Another instance runs the projection (it holds the projection's lease).
    #[error(
        "projection `{projection}` is running elsewhere (another runner holds its lease): stop it first, or wait for its lease to run out"
    )]
    Running {
        /// The projection.
        projection: String,
    },
    /// The store did not renew the leases of a reset or rebuild in time (it failed or
    /// hung until they would run out), so the work was stopped.
    #[error(
        "could not renew the leases of projection `{projection}` before they ran out (the database failed or did not answer): stopped, with what was not committed rolled back; run the command again"
    )]
    FenceLapsed {
        /// The projection.
        projection: String,
    },
    /// Ctrl-C stopped a reset or rebuild; its leases were given up.
    #[error(
        "interrupted: stopped working on projection `{projection}` (what was not committed is rolled back) and gave its leases up"
    )]
    Interrupted {
        /// The projection.
        projection: String,
    },
    /// The application runs the projection in partitions, which a rebuild (one runner of
    /// the whole log) would leave replaying from the start on top of the rebuilt model.
    #[error(
        "projection `{projection}` runs in partitions (`{partition}`), and a rebuild by one runner would leave their checkpoints forgotten, so they would apply every event again on top of it: stop its partition runners, run `es projections reset {projection}`, and start them again to rebuild it"
    )]
    Partitioned {
        /// The projection.
        projection: String,
        /// One of its partitions' keys.
        partition: String,
    },
    /// No AsyncAPI document was registered.
    #[error(
        "this binary has no AsyncAPI document: register your aggregates' channels with `es_cli::App::new().asyncapi(...)` in your application's binary"
    )]
    NoAsyncApi,
    /// Building or writing the AsyncAPI document failed.
    #[error(transparent)]
    AsyncApi(#[from] es_asyncapi::AsyncApiError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] es_core::StoreError),
    /// Reading events failed.
    #[error(transparent)]
    Read(#[from] es_core::ReadError),
    /// A projection's runner failed.
    #[error(transparent)]
    Runner(Box<es_core::RunnerError>),
    /// A projection failed outside its runner (on a reset).
    #[error("projection `{projection}` failed")]
    Projection {
        /// The projection.
        projection: String,
        /// Why.
        #[source]
        source: es_core::error::BoxError,
    },
    /// Writing the output failed.
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl From<es_core::RunnerError> for CliError {
    fn from(error: es_core::RunnerError) -> Self {
        Self::Runner(Box::new(error))
    }
}

/// The exit code of a command that succeeded.
pub const EXIT_OK: u8 = 0;
/// The exit code of a command that failed.
pub const EXIT_FAILED: u8 = 1;
/// The exit code of a command line clap refused (a usage error).
pub const EXIT_USAGE: u8 = 2;
/// The exit code of `es migrate --check` (and of any command) when the schema is behind.
pub const EXIT_BEHIND: u8 = 3;
/// The exit code of a reset or rebuild that Ctrl-C stopped (128 + SIGINT, as a shell
/// reports a process the signal ended).
pub const EXIT_INTERRUPTED: u8 = 130;

impl CliError {
    /// The process exit code for this failure: [`EXIT_BEHIND`] when the schema lacks
    /// migrations (what a deploy script waits for), [`EXIT_INTERRUPTED`] after Ctrl-C,
    /// [`EXIT_FAILED`] otherwise.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::SchemaBehind { .. } | Self::NotMigrated { .. } => EXIT_BEHIND,
            Self::Interrupted { .. } => EXIT_INTERRUPTED,
            _ => EXIT_FAILED,
        })
    }

    /// The one line printed for it: the message and its causes, joined by `: `.
    pub fn line(&self) -> String {
        display_chain(self)
    }
}
