//! `es horizon`: what holds the global log back.

use es_postgres::{PgEventStore, PgHorizon};
use serde::Serialize;

use super::plain;
use crate::error::CliError;
use crate::output::Output;

/// What `es horizon --json` writes.
#[derive(Debug, Serialize)]
struct HorizonRecord {
    /// Whether a transaction holds committed events back now.
    held: bool,
    oldest_running_transaction: u64,
    events_waiting: u64,
    /// How long that transaction has been open, as PostgreSQL prints an interval.
    oldest_transaction_age: Option<String>,
    held_by: Option<HolderRecord>,
    /// The `gid` of a prepared transaction that holds it.
    prepared: Option<String>,
    /// The one-line summary the table shows.
    summary: String,
}

#[derive(Debug, Serialize)]
struct HolderRecord {
    pid: i32,
    database: Option<String>,
    application: Option<String>,
    state: Option<String>,
}

impl From<PgHorizon> for HorizonRecord {
    fn from(horizon: PgHorizon) -> Self {
        Self {
            held: horizon.held_by.is_some() || horizon.prepared.is_some(),
            summary: horizon.to_string(),
            oldest_running_transaction: horizon.oldest_running_transaction,
            events_waiting: horizon.events_waiting,
            oldest_transaction_age: horizon.oldest_transaction_age,
            held_by: horizon.held_by.map(|holder| HolderRecord {
                pid: holder.pid,
                database: holder.database,
                application: holder.application,
                state: holder.state,
            }),
            prepared: horizon.prepared,
        }
    }
}

pub(crate) async fn run(out: &Output, store: &PgEventStore) -> Result<(), CliError> {
    let record = HorizonRecord::from(store.horizon().await?);
    if out.json {
        return out.print_json(&record);
    }
    let mut table = out.table(["horizon", "now"]);
    let none = || "-".to_owned();
    let holder = record.held_by.as_ref();
    table.add_row(vec![
        "held back".to_owned(),
        if record.held { "yes" } else { "no" }.to_owned(),
    ]);
    table.add_row(vec![
        "oldest running transaction".to_owned(),
        record.oldest_running_transaction.to_string(),
    ]);
    table.add_row(vec![
        "events waiting".to_owned(),
        record.events_waiting.to_string(),
    ]);
    table.add_row(vec![
        "open for".to_owned(),
        record.oldest_transaction_age.clone().unwrap_or_else(none),
    ]);
    table.add_row(vec![
        "backend pid".to_owned(),
        holder.map_or_else(none, |h| h.pid.to_string()),
    ]);
    for (label, value) in [
        ("database", holder.and_then(|h| h.database.clone())),
        ("application", holder.and_then(|h| h.application.clone())),
        ("state", holder.and_then(|h| h.state.clone())),
        ("prepared transaction", record.prepared.clone()),
    ] {
        table.add_row(vec![
            label.to_owned(),
            value
                .filter(|v| !v.is_empty())
                .map_or_else(none, |v| plain(&v)),
        ]);
    }
    out.line(&record.summary)?;
    out.print_table(&table, "")
}
