//! What a fault load reports (`fault_load.rs`): failures by kind, recovery times, the
//! figures of a run and the guarantees it broke, and the checks of what the load stored.

#![allow(dead_code, reason = "each user takes a different part")]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use es_core::CommandError;
use uuid::Uuid;

use super::DEADLINE;

/// Failures by kind, with the first message of each.
#[derive(Debug, Default, Clone)]
pub(crate) struct Failures(pub(crate) BTreeMap<String, (u64, String)>);

impl Failures {
    pub(crate) fn add(&mut self, kind: String, error: &(dyn std::error::Error + 'static)) {
        self.0
            .entry(kind)
            .or_insert((0, es_core::error::display_chain(error)))
            .0 += 1;
    }

    pub(crate) fn merge(&mut self, other: Self) {
        for (kind, (count, message)) in other.0 {
            self.0.entry(kind).or_insert((0, message)).0 += count;
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.values().map(|(count, _)| count).sum()
    }
}

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "none");
        }
        for (kind, (count, message)) in &self.0 {
            // The end of the chain, where its root cause is.
            let chars = message.chars().count();
            let tail: String = message.chars().skip(chars.saturating_sub(180)).collect();
            let cut = if chars > 180 { "..." } else { "" };
            write!(f, "\n    {count:>6} x {kind}  (first: {cut}{tail})")?;
        }
        Ok(())
    }
}

/// What kind of database failure is behind `error`: its SQLSTATE, or the kind of sqlx
/// error (`io` for a refused or broken connection).
pub(crate) fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(sqlx) = error.downcast_ref::<sqlx::Error>() {
            return match sqlx {
                sqlx::Error::Database(database) => database
                    .code()
                    .map_or("database".into(), |c| c.into_owned()),
                sqlx::Error::Io(_) => "io".into(),
                sqlx::Error::PoolTimedOut => "pool timed out".into(),
                sqlx::Error::PoolClosed => "pool closed".into(),
                sqlx::Error::Protocol(_) => "protocol".into(),
                sqlx::Error::WorkerCrashed => "worker crashed".into(),
                other => format!("sqlx: {other}"),
            };
        }
        current = error.source();
    }
    "no database cause".into()
}

pub(crate) fn command_failure<E: std::error::Error + Send + Sync + 'static>(
    error: &CommandError<E>,
) -> String {
    let what = match error {
        CommandError::Load { .. } => "load",
        CommandError::Append { .. } => "append",
        CommandError::Conflict { .. } => "conflict",
        CommandError::Rejected { .. } => "rejected",
        CommandError::Archived { .. } => "archived",
        _ => "other",
    };
    format!("{what} {}", cause(error))
}

/// A command that was acknowledged, and the events its outcome named.
pub(crate) struct Acked {
    pub(crate) command_id: Uuid,
    pub(crate) events: Vec<Uuid>,
}

/// How long after the server was back each part of the load made progress again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recovery {
    /// To the first acknowledged command.
    pub(crate) writers: Option<Duration>,
    /// To the first event a subscriber received.
    pub(crate) subscribers: Option<Duration>,
    /// To the first event the runner handled.
    pub(crate) runner: Option<Duration>,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |d: Option<Duration>| {
            d.map_or(format!("none within {DEADLINE:?}"), |d| format!("{d:.0?}"))
        };
        write!(
            f,
            "first acknowledged command {}, first delivery {}, runner handling {}",
            show(self.writers),
            show(self.subscribers),
            show(self.runner)
        )
    }
}

/// What the load did and which guarantees it broke.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) commands_acknowledged: usize,
    pub(crate) commands_unknown: usize,
    pub(crate) command_errors: Failures,
    pub(crate) recorded_despite_error: u64,
    pub(crate) events_stored: usize,
    pub(crate) events_delivered: usize,
    pub(crate) subscriber_errors: usize,
    pub(crate) runner_failures: Failures,
    pub(crate) violations: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "commands acknowledged: {}", self.commands_acknowledged)?;
        writeln!(f, "commands unknown at the end: {}", self.commands_unknown)?;
        writeln!(
            f,
            "command errors: {} {}",
            self.command_errors.total(),
            self.command_errors
        )?;
        writeln!(
            f,
            "  of which recorded all the same (the retry found them): {}",
            self.recorded_despite_error
        )?;
        writeln!(f, "events stored: {}", self.events_stored)?;
        writeln!(
            f,
            "events delivered to subscribers: {}",
            self.events_delivered
        )?;
        writeln!(f, "subscription errors: {}", self.subscriber_errors)?;
        writeln!(f, "runner failures: {}", self.runner_failures)?;
        write!(f, "violations: {}", self.violations.len())?;
        for violation in &self.violations {
            write!(f, "\n  - {violation}")?;
        }
        Ok(())
    }
}

/// Every stream holds versions 1..=n.
pub(crate) fn check_streams(
    rows: &[(Uuid, String, i64, Option<Uuid>)],
    violations: &mut Vec<String>,
) {
    let mut expected: HashMap<&str, i64> = HashMap::new();
    for (_, stream, version, _) in rows {
        let next = expected.entry(stream.as_str()).or_insert(1);
        if *version != *next {
            violations.push(format!(
                "stream {stream}: version {version} where {next} was due"
            ));
        }
        *next = version + 1;
    }
}

/// Each acknowledged command's events are stored, exactly the ones its outcome named, and
/// no command (acknowledged or not) recorded its events twice. Commands are told apart by
/// their events' causation id, the command id.
pub(crate) fn check_commands(
    rows: &[(Uuid, String, i64, Option<Uuid>)],
    acked: &[Acked],
    violations: &mut Vec<String>,
) {
    let mut by_command: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (event_id, _, _, causation) in rows {
        if let Some(command) = causation {
            by_command.entry(*command).or_default().push(*event_id);
        }
    }
    let twice = by_command
        .values()
        .filter(|events| events.len() > 1)
        .count();
    if twice > 0 {
        violations.push(format!("{twice} commands recorded more than one event"));
    }
    let mut lost = 0;
    let mut other = 0;
    for command in acked {
        match by_command.get(&command.command_id) {
            None => lost += 1,
            Some(events) if *events != command.events => other += 1,
            Some(_) => {}
        }
    }
    if lost > 0 {
        violations.push(format!(
            "{lost} of {} acknowledged commands have no stored event",
            acked.len()
        ));
    }
    if other > 0 {
        violations.push(format!(
            "{other} acknowledged commands stored other events than their outcome named"
        ));
    }
}
