//! [`App`]: the `es` CLI with what an application registers (its projections, its AsyncAPI
//! document), parsing the command line and running the command.

use std::ffi::OsString;
use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use es_asyncapi::{AsyncApi, AsyncApiError, Document};
use es_core::Projection;
use es_postgres::PgEventStore;

use crate::cli::{Cli, Command, Global, ParkedAction, ProjectionsAction};
use crate::commands;
use crate::error::{CliError, EXIT_OK};
use crate::output::{Output, stderr_color};
use crate::registry::{Factory, Registered};

/// Where the AsyncAPI document comes from.
type AsyncApiSource = Box<dyn FnOnce() -> Result<Document, AsyncApiError>>;

/// The `es` admin CLI, with the projections and the AsyncAPI document of an application.
///
/// The stock `es` binary is `App::new().run()`: everything that reads the store works,
/// while the commands that run the application's own code (rebuilding or resetting a
/// projection, retrying its parked events, printing its AsyncAPI document) say how to
/// register it. An application gets them all by running `App` from a binary of its own,
/// with its projections and channels registered:
///
/// ```no_run
/// use es_cli::App;
/// # use es_core::{EventEnvelope, Projection, RawEvent};
/// # #[derive(Debug, Default)]
/// # struct OpenOrders;
/// # impl Projection for OpenOrders {
/// #     type Event = RawEvent;
/// #     type Error = std::convert::Infallible;
/// #     fn name(&self) -> &str { "open-orders" }
/// #     async fn handle(&mut self, _: &EventEnvelope<RawEvent>) -> Result<(), Self::Error> { Ok(()) }
/// # }
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     App::new()
///         // Called with the store the command connected to, whenever a command needs
///         // the projection (to learn its name, to rebuild it, ...): keep it cheap.
///         .projection(|_store| OpenOrders::default())
///         .asyncapi(es_asyncapi::AsyncApi::new("Orders", "1.0.0"))
///         .run()
///         .await
/// }
/// ```
#[derive(Default)]
pub struct App {
    projections: Vec<Box<dyn Registered>>,
    asyncapi: Option<AsyncApiSource>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("projections", &self.projections.len())
            .field("asyncapi", &self.asyncapi.is_some())
            .finish()
    }
}

impl App {
    /// The CLI with nothing registered: what the stock `es` binary runs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a projection, built by `factory` on the store a command connected to.
    ///
    /// `es projections rebuild NAME`, `es projections reset NAME` and `es parked retry
    /// NAME` then run it, with es-core's [`ProjectionRunner`](es_core::ProjectionRunner)
    /// (so under its lease: not while the application runs it elsewhere), and `es
    /// projections` lists it even before it has a checkpoint, with its lag counted over
    /// the events it reads. NAME is the projection's [`name`](Projection::name); the
    /// factory is called to learn it, so keep it cheap (no connecting, no I/O).
    #[must_use]
    pub fn projection<P, F>(mut self, factory: F) -> Self
    where
        F: Fn(&PgEventStore) -> P + 'static,
        P: Projection + 'static,
    {
        self.projections.push(Box::new(Factory::new(factory)));
        self
    }

    /// Registers the AsyncAPI document that `es asyncapi` prints, as the builder of it
    /// (with the application's channels, from its aggregates' event types).
    #[must_use]
    pub fn asyncapi(mut self, builder: AsyncApi) -> Self {
        self.asyncapi = Some(Box::new(move || builder.build()));
        self
    }

    /// Registers the AsyncAPI document that `es asyncapi` prints, as a function that
    /// builds it (such as an application's `channels::asyncapi`).
    #[must_use]
    pub fn asyncapi_with(
        mut self,
        build: impl FnOnce() -> Result<Document, AsyncApiError> + 'static,
    ) -> Self {
        self.asyncapi = Some(Box::new(build));
        self
    }

    /// Parses the process's command line and runs the command; returns the exit code
    /// (see [`CliError::exit_code`]).
    ///
    /// A usage error prints clap's help and gives exit code 2; a failed command prints one
    /// line on standard error. Run it on a Tokio runtime with timers and signals, as the
    /// main task (`#[tokio::main]`): the future is not `Send`, since the registered
    /// factories need not be.
    pub async fn run(self) -> ExitCode {
        self.run_from(std::env::args_os()).await
    }

    /// As [`run`](App::run), with `args` as the command line (the first is the program's
    /// name).
    pub async fn run_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let cli = match Cli::try_parse_from(args) {
            Ok(cli) => cli,
            // Help and version included: clap prints them and knows their exit codes.
            Err(error) => {
                let _ = error.print();
                return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
            }
        };
        match self.execute(cli).await {
            Ok(()) => ExitCode::from(EXIT_OK),
            // A reader that went away (`es tail | head`) is no failure.
            Err(CliError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                ExitCode::from(EXIT_OK)
            }
            Err(error) => {
                let label = if stderr_color() {
                    "\x1b[1;31merror\x1b[0m"
                } else {
                    "error"
                };
                eprintln!("{label}: {}", error.line());
                error.exit_code()
            }
        }
    }

    async fn execute(self, cli: Cli) -> Result<(), CliError> {
        let out = Output::new(cli.global.json);
        let global = &cli.global;
        match cli.command {
            Command::Migrate { check } => {
                let store = connect(global).await?;
                commands::migrate::run(&out, &store, check).await
            }
            Command::Streams { category, limit } => {
                let store = ready(global).await?;
                commands::streams::list(&out, &store, category.as_deref(), limit).await
            }
            Command::Show { stream, as_of } => {
                let store = ready(global).await?;
                commands::streams::show(&out, &store, &stream, as_of).await
            }
            Command::Tail(args) => {
                let store = ready(global).await?;
                commands::tail::run(&out, &store, &args).await
            }
            Command::Projections { action } => {
                let store = ready(global).await?;
                let registry = Registry::new(&self.projections, &store);
                match action {
                    None => commands::projections::list(&out, &store, &registry).await,
                    Some(ProjectionsAction::Reset {
                        name,
                        checkpoint_only,
                    }) => {
                        commands::projections::reset(
                            &out,
                            &store,
                            &registry,
                            &name,
                            checkpoint_only,
                        )
                        .await
                    }
                    Some(ProjectionsAction::Rebuild { name }) => {
                        commands::projections::rebuild(&out, &store, &registry, &name).await
                    }
                }
            }
            Command::Parked { name, action } => {
                let store = ready(global).await?;
                let registry = Registry::new(&self.projections, &store);
                match action {
                    None => commands::parked::list(&out, &store, &registry, name.as_deref()).await,
                    Some(ParkedAction::Retry { name, event_id }) => {
                        commands::parked::retry(&out, &store, &registry, &name, event_id).await
                    }
                }
            }
            Command::Horizon => {
                let store = ready(global).await?;
                commands::horizon::run(&out, &store).await
            }
            Command::Asyncapi => {
                let build = self.asyncapi.ok_or(CliError::NoAsyncApi)?;
                let document = build()?;
                if out.json {
                    out.line(&document.to_json_pretty())
                } else {
                    out.line(document.to_yaml()?.trim_end())
                }
            }
        }
    }
}

/// The registered projections, by the names their factories give on this store.
pub(crate) struct Registry<'a> {
    entries: Vec<(String, &'a dyn Registered)>,
}

impl<'a> Registry<'a> {
    fn new(projections: &'a [Box<dyn Registered>], store: &PgEventStore) -> Self {
        Self {
            entries: projections
                .iter()
                .map(|p| (p.name(store), p.as_ref()))
                .collect(),
        }
    }

    /// The projection registered as `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&'a dyn Registered> {
        self.entries
            .iter()
            .find(|(registered, _)| registered == name)
            .map(|(_, projection)| *projection)
    }

    /// The names, in registration order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(name, _)| name.as_str())
    }

    /// The names as a phrase for messages.
    pub(crate) fn describe(&self) -> String {
        if self.entries.is_empty() {
            "none (this binary registers no projections)".to_owned()
        } else {
            self.names()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// A store on the database `global` names, in its schema: few connections (a CLI runs
/// one thing at a time), prompt polling for `es tail`, and no notifications (it appends
/// nothing).
async fn connect(global: &Global) -> Result<PgEventStore, CliError> {
    let url = global.database_url.as_deref().ok_or(CliError::NoDatabase)?;
    PgEventStore::builder_for_url(url)
        .and_then(|builder| builder.schema(&global.schema))
        .map_err(CliError::Connect)?
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .poll_interval(Duration::from_millis(250))
        .notify(false)
        .connect()
        .await
        .map_err(CliError::Connect)
}

/// As [`connect`], and checks that the schema holds an event store this `es` can read.
async fn ready(global: &Global) -> Result<PgEventStore, CliError> {
    let store = connect(global).await?;
    let status = store.admin().schema_status().await?;
    if !status.is_migrated() {
        return Err(CliError::NotMigrated {
            schema: status.schema,
        });
    }
    if status.applied < status.latest {
        return Err(CliError::SchemaBehind {
            schema: status.schema,
            applied: status.applied,
            latest: status.latest,
        });
    }
    if status.applied > status.latest {
        return Err(CliError::SchemaTooNew {
            schema: status.schema,
            applied: status.applied,
            latest: status.latest,
        });
    }
    Ok(store)
}
