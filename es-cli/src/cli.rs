//! The command line: what `es` accepts, parsed by clap.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use es_core::{AsOf, Position, Version};

/// The admin CLI of es-rs, for an event store on PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "es", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The PostgreSQL server and database, as a `postgres://` URL. Prefer setting
    /// DATABASE_URL: other users of the machine can read a command line (`ps`).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// The schema of the event store.
    #[arg(long, env = "ES_SCHEMA", default_value = "es", global = true)]
    pub(crate) schema: String,
    /// Writes JSON for scripts instead of tables (field names are stable; see the guide).
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Creates or upgrades the event store's schema.
    Migrate {
        /// Only checks: exits with 3 if the schema is behind, 1 if it cannot be used,
        /// 0 if it is ready; changes nothing.
        #[arg(long)]
        check: bool,
    },
    /// Lists streams with their event counts, last versions and archived flags.
    Streams {
        /// Only streams of this category.
        #[arg(long)]
        category: Option<String>,
        /// Lists at most this many streams.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Shows a stream's history, with each event's metadata.
    Show {
        /// The stream, as `category-id`.
        stream: String,
        /// Shows the history up to a version (a number) or a time (RFC 3339, such as
        /// `2026-11-17T09:00:00Z`): the events of the state as it was then.
        #[arg(long, value_parser = parse_as_of)]
        as_of: Option<AsOf>,
    },
    /// Follows the live log until interrupted (or until --limit or --timeout).
    Tail(TailArgs),
    /// Lists projections (status, position, lag, last error, lease holder), or resets or
    /// rebuilds one.
    #[command(args_conflicts_with_subcommands = true)]
    Projections {
        #[command(subcommand)]
        action: Option<ProjectionsAction>,
    },
    /// Lists parked events (of every projection, or of NAME), or retries them.
    #[command(args_conflicts_with_subcommands = true)]
    Parked {
        /// Only this projection's parked events.
        name: Option<String>,
        #[command(subcommand)]
        action: Option<ParkedAction>,
    },
    /// Shows what holds the log back: the oldest open transaction, since when, and its
    /// backend.
    Horizon,
    /// Prints the AsyncAPI document of the events the application shares (YAML; JSON with
    /// --json).
    Asyncapi,
}

/// `es tail`'s options.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Only events of streams in this category (repeat for several).
    #[arg(long = "category")]
    pub(crate) categories: Vec<String>,
    /// Only events of this type (repeat for several).
    #[arg(long = "event-type")]
    pub(crate) event_types: Vec<String>,
    /// Where to begin: `start` (the whole log), `end` (only new events), or after a
    /// position `major:minor` as another command printed it.
    #[arg(long, default_value = "end", value_parser = parse_from)]
    pub(crate) from: TailFrom,
    /// Stops after this many events.
    #[arg(long)]
    pub(crate) limit: Option<u64>,
    /// Stops after this long (such as `30s` or `5m`), events or not.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) timeout: Option<Duration>,
}

/// Where `es tail` begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TailFrom {
    /// The beginning of the log.
    Start,
    /// After the newest event.
    End,
    /// After this position.
    After(Position),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProjectionsAction {
    /// Empties a registered projection's read model and forgets its checkpoints: its
    /// next runner starts from the beginning of the log.
    Reset {
        /// The projection.
        name: String,
        /// Only forgets the checkpoints, leaving the read model as it is (for a read model
        /// the application empties itself); works for unregistered projections too.
        #[arg(long)]
        checkpoint_only: bool,
    },
    /// Rebuilds a registered projection: empties it and handles the whole log again.
    Rebuild {
        /// The projection.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ParkedAction {
    /// Hands a registered projection its parked events again (or only EVENT_ID): those it
    /// now handles are released, the others stay parked with the new error.
    Retry {
        /// The projection.
        name: String,
        /// Only this parked event.
        event_id: Option<uuid::Uuid>,
    },
}

fn parse_as_of(text: &str) -> Result<AsOf, String> {
    if let Ok(version) = text.parse::<u64>() {
        return Ok(AsOf::Version(Version::new(version)));
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| AsOf::Time(time.to_utc()))
        .map_err(|_| {
            format!(
                "`{text}` is neither a version nor an RFC 3339 time such as 2026-11-17T09:00:00Z"
            )
        })
}

fn parse_from(text: &str) -> Result<TailFrom, String> {
    match text {
        "start" => Ok(TailFrom::Start),
        "end" => Ok(TailFrom::End),
        _ => text
            .parse()
            .map(TailFrom::After)
            .map_err(|_| format!("`{text}` is not `start`, `end` or a position `major:minor`")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn as_of_takes_a_version_or_a_time() {
        assert_eq!(parse_as_of("3").unwrap(), AsOf::Version(Version::new(3)));
        assert!(matches!(
            parse_as_of("2026-11-17T09:00:00+01:00").unwrap(),
            AsOf::Time(time) if time.to_rfc3339() == "2026-11-17T08:00:00+00:00"
        ));
        assert!(parse_as_of("yesterday").is_err());
    }

    #[test]
    fn tail_starts_at_start_end_or_a_position() {
        assert_eq!(parse_from("start").unwrap(), TailFrom::Start);
        assert_eq!(parse_from("end").unwrap(), TailFrom::End);
        assert_eq!(
            parse_from("7:3").unwrap(),
            TailFrom::After(Position::from_parts(7, 3))
        );
        assert!(parse_from("middle").is_err());
    }

    #[test]
    fn parked_retry_is_a_subcommand_and_a_name_a_filter() {
        let cli = Cli::try_parse_from(["es", "parked", "retry", "orders"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Parked { name: None, action: Some(ParkedAction::Retry { ref name, event_id: None }) } if name == "orders"
        ));
        let cli = Cli::try_parse_from(["es", "parked", "orders"]).unwrap();
        assert!(
            matches!(cli.command, Command::Parked { name: Some(ref name), action: None } if name == "orders")
        );
    }
}
