//! What holds the global log back: [`PgHorizon`], read by [`PgEventStore::horizon`] and by
//! the store's readers.
//!
//! [`PgEventStore::horizon`]: crate::PgEventStore::horizon

use std::fmt;

use es_core::StoreError;

use sqlx::Row as _;

use crate::error::store_error;
use crate::inner::{Inner, statement};

/// How far the global log is readable, and what holds it back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgHorizon {
    /// The oldest transaction that may still write to this database: events written by
    /// it or later are not delivered yet, so that none is skipped if it commits late.
    /// (Transactions in other databases of the server do not count.)
    pub oldest_running_transaction: u64,
    /// Committed events that wait behind it.
    pub events_waiting: u64,
    /// How long that transaction has been open, as PostgreSQL prints an interval, if it
    /// still runs.
    pub oldest_transaction_age: Option<String>,
    /// The session running that transaction, if it still runs.
    pub held_by: Option<PgHorizonHolder>,
    /// The name (`gid`) of that transaction if it is a prepared (two-phase) one, which
    /// holds the log back until it is committed or rolled back (`COMMIT PREPARED`).
    pub prepared: Option<String>,
}

/// The session whose open transaction holds the log's horizon back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgHorizonHolder {
    /// Its backend's process id (`pg_terminate_backend` takes it).
    pub pid: i32,
    /// Its database.
    pub database: Option<String>,
    /// Its `application_name`, if it set one.
    pub application: Option<String>,
    /// What it is doing (`active`, `idle in transaction`, ...), if the role may see it.
    pub state: Option<String>,
}

impl fmt::Display for PgHorizon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events wait behind transaction {}",
            self.events_waiting, self.oldest_running_transaction
        )?;
        if let Some(holder) = &self.held_by {
            write!(f, " of backend {}", holder.pid)?;
            if let Some(database) = &holder.database {
                write!(f, " in database `{database}`")?;
            }
            if let Some(application) = holder.application.as_deref().filter(|a| !a.is_empty()) {
                write!(f, " (application `{application}`)")?;
            }
            if let Some(state) = &holder.state {
                write!(f, ", {state}")?;
            }
        }
        if let Some(gid) = &self.prepared {
            write!(f, " (prepared transaction `{gid}`)")?;
        }
        if let Some(age) = &self.oldest_transaction_age {
            write!(f, ", open for {age}")?;
        }
        Ok(())
    }
}

/// The horizon now, as [`PgEventStore::horizon`](crate::PgEventStore::horizon) reports it.
pub(crate) async fn read(inner: &Inner) -> Result<PgHorizon, StoreError> {
    let row = statement!(inner, |c| sqlx::query(inner.sql.horizon.clone())
        .fetch_one(c))
    .await
    .map_err(|e| store_error("horizon", e))?;
    let read = |e| store_error("horizon", e);
    let horizon: String = row.try_get("horizon").map_err(read)?;
    let waiting: i64 = row.try_get("waiting").map_err(read)?;
    let pid: Option<i32> = row.try_get("pid").map_err(read)?;
    let oldest_running_transaction = horizon.parse().map_err(|_| {
        StoreError::new(
            "horizon",
            format!("the server gave the horizon as {horizon:?}"),
        )
    })?;
    Ok(PgHorizon {
        oldest_running_transaction,
        events_waiting: u64::try_from(waiting).unwrap_or_default(),
        prepared: row.try_get("prepared").map_err(read)?,
        oldest_transaction_age: row.try_get("age").map_err(read)?,
        held_by: match pid {
            Some(pid) => Some(PgHorizonHolder {
                pid,
                database: row.try_get("database").map_err(read)?,
                application: row.try_get("application").map_err(read)?,
                state: row.try_get("state").map_err(read)?,
            }),
            None => None,
        },
    })
}
