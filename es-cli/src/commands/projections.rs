//! `es projections`, `es projections reset NAME`, `es projections rebuild NAME`.

use std::io::IsTerminal as _;

use chrono::{DateTime, Utc};
use comfy_table::Color;
use es_core::{EventStore as _, Position};
use es_postgres::PgEventStore;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use uuid::Uuid;

use super::{clip, plain, short, time};
use crate::app::Registry;
use crate::error::CliError;
use crate::fence::{Own, fenced};
use crate::output::Output;

/// A projection as `es projections --json` writes it.
#[derive(Debug, Serialize)]
struct ProjectionRecord {
    name: String,
    /// Whether this binary registers it (and so can rebuild it).
    registered: bool,
    /// `running` (a runner holds its lease), `stopped` (it has a checkpoint, no runner
    /// holds its lease), or `not started` (no checkpoint).
    status: &'static str,
    /// The last position it committed, `major:minor`.
    checkpoint: Option<String>,
    checkpoint_updated_at: Option<DateTime<Utc>>,
    /// Events after the checkpoint that it has yet to see: of the types it reads when
    /// registered, of every type otherwise.
    lag: u64,
    parked: u64,
    last_error: Option<String>,
    last_parked_at: Option<DateTime<Utc>>,
    lease: Option<LeaseRecord>,
}

#[derive(Debug, Serialize)]
struct LeaseRecord {
    owner: Uuid,
    expires_at: DateTime<Utc>,
    held: bool,
}

pub(crate) async fn list(
    out: &Output,
    store: &PgEventStore,
    registry: &Registry<'_>,
) -> Result<(), CliError> {
    let found = store.admin().projections().await?;
    // Registered projections that have not run yet are listed too.
    let mut names: Vec<&str> = found.iter().map(|p| p.name.as_str()).collect();
    for name in registry.names() {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.sort_unstable();
    let mut records = Vec::with_capacity(names.len());
    for name in names {
        let info = found.iter().find(|p| p.name == name);
        let registered = registry.get(name);
        let checkpoint = info.and_then(|p| p.checkpoint);
        // A registered projection's lag counts only the events it reads.
        let lag = match (registered, info) {
            (Some(projection), _) => {
                store
                    .count_after(
                        checkpoint.unwrap_or(Position::START),
                        projection.filter(store),
                    )
                    .await?
            }
            (None, Some(info)) => info.lag,
            (None, None) => 0,
        };
        let lease = info.and_then(|p| p.lease.as_ref());
        let status = match (lease, checkpoint) {
            (Some(lease), _) if lease.held => "running",
            (_, Some(_)) => "stopped",
            (_, None) => "not started",
        };
        records.push(ProjectionRecord {
            name: name.to_owned(),
            registered: registered.is_some(),
            status,
            checkpoint: checkpoint.map(|p| p.to_string()),
            checkpoint_updated_at: info.and_then(|p| p.checkpoint_updated_at),
            lag,
            parked: info.map_or(0, |p| p.parked),
            last_error: info.and_then(|p| p.last_error.clone()),
            last_parked_at: info.and_then(|p| p.last_parked_at),
            lease: lease.map(|lease| LeaseRecord {
                owner: lease.owner,
                expires_at: lease.expires_at,
                held: lease.held,
            }),
        });
    }
    if out.json {
        return out.print_json(&records);
    }
    let mut table = out.table([
        "projection",
        "status",
        "position",
        "lag",
        "parked",
        "last error",
        "lease holder",
    ]);
    for record in &records {
        let status_color = match record.status {
            "running" => Color::Green,
            "stopped" => Color::Yellow,
            _ => Color::Grey,
        };
        let lease = record.lease.as_ref().map_or_else(String::new, |lease| {
            let until = if lease.held { "until" } else { "expired" };
            format!(
                "{} ({until} {})",
                short(lease.owner),
                time(lease.expires_at)
            )
        });
        let name = if record.registered {
            plain(&record.name)
        } else {
            format!("{} (not registered)", plain(&record.name))
        };
        table.add_row(vec![
            comfy_table::Cell::new(name),
            out.colored(record.status.to_owned(), status_color),
            comfy_table::Cell::new(record.checkpoint.clone().unwrap_or_else(|| "-".to_owned())),
            comfy_table::Cell::new(record.lag),
            if record.parked > 0 {
                out.colored(record.parked.to_string(), Color::Red)
            } else {
                comfy_table::Cell::new(0)
            },
            comfy_table::Cell::new(clip(record.last_error.as_deref().unwrap_or(""), 50)),
            comfy_table::Cell::new(lease),
        ]);
    }
    out.print_table(
        &table,
        "no projections: none has a checkpoint, a lease or parked events yet",
    )
}

/// What `es projections reset --json` writes.
#[derive(Debug, Serialize)]
struct ResetRecord {
    projection: String,
    checkpoints_forgotten: u64,
    /// Whether the read model was emptied too (not with `--checkpoint-only`).
    read_model_reset: bool,
}

pub(crate) async fn reset(
    out: &Output,
    store: &PgEventStore,
    registry: &Registry<'_>,
    name: &str,
    checkpoint_only: bool,
) -> Result<(), CliError> {
    let record = if checkpoint_only {
        known(store, registry, name).await?;
        // Under the projection's leases, as a full reset: a runner still going would
        // write its checkpoint back at its next commit (it saves with an upsert).
        let forgotten = fenced(store, name, Own::Take, async {
            Ok(store.admin().forget_checkpoints(name).await?)
        })
        .await?;
        ResetRecord {
            projection: name.to_owned(),
            checkpoints_forgotten: forgotten,
            read_model_reset: false,
        }
    } else {
        let projection = registry.get(name).ok_or_else(|| CliError::NotRegistered {
            name: name.to_owned(),
            action: "a reset",
            hint: "; or pass --checkpoint-only to forget its checkpoints and leave the read model as it is",
        })?;
        ResetRecord {
            projection: name.to_owned(),
            checkpoints_forgotten: projection.reset(store).await?,
            read_model_reset: true,
        }
    };
    if out.json {
        return out.print_json(&record);
    }
    let what = if record.read_model_reset {
        "emptied its read model and forgot"
    } else {
        "forgot"
    };
    out.line(&format!(
        "reset projection `{name}`: {what} {} checkpoint(s); its next runner starts at the beginning of the log",
        record.checkpoints_forgotten
    ))
}

/// An error unless the tables or the registry know of `name`.
pub(crate) async fn known(
    store: &PgEventStore,
    registry: &Registry<'_>,
    name: &str,
) -> Result<(), CliError> {
    if registry.get(name).is_some() || store.admin().projection(name).await?.is_some() {
        return Ok(());
    }
    Err(CliError::UnknownProjection {
        name: name.to_owned(),
        registered: registry.describe(),
    })
}

/// What `es projections rebuild --json` writes.
#[derive(Debug, Serialize)]
struct RebuildRecord {
    projection: String,
    /// Events handled (or parked) by the rebuild.
    handled: u64,
}

pub(crate) async fn rebuild(
    out: &Output,
    store: &PgEventStore,
    registry: &Registry<'_>,
    name: &str,
) -> Result<(), CliError> {
    let projection = registry.get(name).ok_or_else(|| CliError::NotRegistered {
        name: name.to_owned(),
        action: "a rebuild",
        hint: "",
    })?;
    // A bar only for a person watching: not in a pipe, a log or a script's capture.
    let progress = if std::io::stderr().is_terminal() && !out.json {
        let total = store
            .count_after(Position::START, projection.filter(store))
            .await?;
        let bar = ProgressBar::new(total);
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events ({eta} left)")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("rebuilding {name}"));
        bar
    } else {
        ProgressBar::hidden()
    };
    let handled = projection.rebuild(store, &progress).await;
    progress.finish_and_clear();
    let record = RebuildRecord {
        projection: name.to_owned(),
        handled: handled?,
    };
    if out.json {
        return out.print_json(&record);
    }
    out.line(&format!(
        "rebuilt projection `{name}`: {} events handled",
        record.handled
    ))
}
