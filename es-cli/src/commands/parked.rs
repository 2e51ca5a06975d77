//! `es parked [NAME]` and `es parked retry NAME [EVENT_ID]`.

use chrono::{DateTime, Utc};
use es_core::ParkedEvent;
use es_postgres::PgEventStore;
use serde::Serialize;
use uuid::Uuid;

use super::projections::known;
use super::{clip, plain, time};
use crate::app::Registry;
use crate::error::CliError;
use crate::output::Output;

/// A parked event as `es parked --json` writes it.
#[derive(Debug, Serialize)]
struct ParkedRecord {
    projection: String,
    event_id: Uuid,
    stream_id: String,
    version: u64,
    position: String,
    event_type: String,
    error: String,
    attempts: u32,
    parked_at: DateTime<Utc>,
}

impl From<ParkedEvent> for ParkedRecord {
    fn from(parked: ParkedEvent) -> Self {
        Self {
            projection: parked.projection,
            event_id: parked.event_id,
            stream_id: parked.stream_id.to_string(),
            version: parked.version.get(),
            position: parked.position.to_string(),
            event_type: parked.event_type,
            error: parked.error,
            attempts: parked.attempts,
            parked_at: parked.parked_at,
        }
    }
}

pub(crate) async fn list(
    out: &Output,
    store: &PgEventStore,
    registry: &Registry<'_>,
    name: Option<&str>,
) -> Result<(), CliError> {
    if let Some(name) = name {
        known(store, registry, name).await?;
    }
    let records: Vec<ParkedRecord> = store
        .admin()
        .parked(name)
        .await?
        .into_iter()
        .map(ParkedRecord::from)
        .collect();
    if out.json {
        return out.print_json(&records);
    }
    let mut table = out.table([
        "projection",
        "event",
        "stream",
        "version",
        "type",
        "attempts",
        "parked",
        "error",
    ]);
    for record in &records {
        table.add_row(vec![
            plain(&record.projection),
            record.event_id.to_string(),
            record.stream_id.clone(),
            record.version.to_string(),
            plain(&record.event_type),
            record.attempts.to_string(),
            time(record.parked_at),
            clip(&record.error, 60),
        ]);
    }
    let empty = match name {
        Some(name) => format!("no parked events for projection `{name}`"),
        None => "no parked events".to_owned(),
    };
    out.print_table(&table, &empty)
}

/// What `es parked retry --json` writes.
#[derive(Debug, Serialize)]
struct RetryRecord {
    projection: String,
    /// Parked events handed to the projection again.
    retried: usize,
    /// Those it handled, and so released.
    handled: usize,
    /// Those that failed again and stay parked.
    still_parked: usize,
}

pub(crate) async fn retry(
    out: &Output,
    store: &PgEventStore,
    registry: &Registry<'_>,
    name: &str,
    event_id: Option<Uuid>,
) -> Result<(), CliError> {
    let projection = registry.get(name).ok_or_else(|| CliError::NotRegistered {
        name: name.to_owned(),
        action: "a retry",
        hint: "",
    })?;
    let chosen = |parked: &[ParkedEvent]| {
        parked
            .iter()
            .filter(|entry| event_id.is_none_or(|id| entry.event_id == id))
            .count()
    };
    let retried = chosen(&store.admin().parked(Some(name)).await?);
    if let Some(event_id) = event_id
        && retried == 0
    {
        return Err(CliError::NotParked {
            projection: name.to_owned(),
            event_id,
        });
    }
    let handled = projection.retry(store, event_id).await?;
    let record = RetryRecord {
        projection: name.to_owned(),
        retried,
        handled,
        still_parked: chosen(&store.admin().parked(Some(name)).await?),
    };
    if out.json {
        return out.print_json(&record);
    }
    out.line(&format!(
        "retried {} parked event(s) of projection `{name}`: {} handled and released, {} still parked",
        record.retried, record.handled, record.still_parked
    ))
}
