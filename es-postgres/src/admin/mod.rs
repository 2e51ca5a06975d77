//! [`PgAdmin`]: the read and repair queries an operator's tool (the `es` CLI of es-cli)
//! asks of a store that its application does not: which streams exist, how far each
//! projection got and who runs it, which events are parked, and whether the schema was
//! migrated at all.
//!
//! Everything here reads or forgets bookkeeping; nothing writes events. Where the store
//! already answers a question (a stream's history, the horizon, one projection's parked
//! events, the events after a position), the admin calls it rather than asking again.

mod projections;

use chrono::{DateTime, Utc};
use es_core::{Position, ReadError, StoreError, StreamId, Version};
use sqlx::Row as _;

use crate::error::store_error;
use crate::inner::statement;
use crate::store::PgEventStore;

#[cfg(test)]
pub(crate) use projections::PROJECTION_COLUMNS;
pub use projections::{PgLeaseInfo, PgProjectionInfo};

/// Administration of one store: the queries behind the `es` CLI, as a small API of its
/// own so that other tools (a health page, a script in Rust) can ask them too.
///
/// Cheap to clone, like the store it is made from ([`PgEventStore::admin`]).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use es_postgres::PgEventStore;
///
/// let store = PgEventStore::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
/// let admin = store.admin();
/// if !admin.schema_status().await?.is_current() {
///     store.migrate().await?;
/// }
/// for stream in admin.streams(Some("order"), None, 20).await? {
///     println!("{} has {} events", stream.stream_id, stream.events);
/// }
/// for projection in admin.projections().await? {
///     println!("{}: {} behind", projection.name, projection.lag);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PgAdmin {
    store: PgEventStore,
}

impl PgEventStore {
    /// The administration queries of this store ([`PgAdmin`]).
    pub fn admin(&self) -> PgAdmin {
        PgAdmin {
            store: self.clone(),
        }
    }
}

/// How far a schema's migrations went ([`PgAdmin::schema_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgSchemaStatus {
    /// The schema.
    pub schema: String,
    /// The newest migration it applied: 0 when it was never migrated (no schema, or no
    /// migrations table in it).
    pub applied: i32,
    /// The newest migration this es-postgres has.
    pub latest: i32,
}

impl PgSchemaStatus {
    /// Whether `migrate` ever ran on the schema.
    pub fn is_migrated(&self) -> bool {
        self.applied > 0
    }

    /// Whether the schema has every migration this es-postgres has (and none newer).
    pub fn is_current(&self) -> bool {
        self.applied == self.latest
    }
}

/// One stream, as [`PgAdmin::streams`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgStreamSummary {
    /// The stream.
    pub stream_id: StreamId,
    /// How many events it holds.
    pub events: u64,
    /// Its last version.
    pub version: Version,
    /// When its first event was recorded.
    pub first_recorded_at: DateTime<Utc>,
    /// When its last event was recorded.
    pub last_recorded_at: DateTime<Utc>,
    /// Whether it is archived (it takes no more events; its history stays).
    pub archived: bool,
}

/// The columns `sql/admin_streams.sql` feeds [`PgStreamSummary`] from.
#[cfg(test)]
pub(crate) const STREAM_COLUMNS: &[&str] = &[
    "stream_id",
    "events",
    "version",
    "first_recorded_at",
    "last_recorded_at",
    "archived",
];

impl PgAdmin {
    /// The store these queries run on.
    pub fn store(&self) -> &PgEventStore {
        &self.store
    }

    /// How far the schema's migrations went, reading only: whether `migrate` ever ran on
    /// it, and whether it is behind this es-postgres. (A role that may not migrate learns
    /// what it lacks beyond that from [`PgEventStore::verify`].)
    ///
    /// # Errors
    ///
    /// Fails if the server cannot be queried.
    pub async fn schema_status(&self) -> Result<PgSchemaStatus, StoreError> {
        let inner = &self.store.inner;
        let migrated: bool = statement!(inner, |c| {
            sqlx::query_scalar(inner.sql.admin_migrations_table.clone()).fetch_one(c)
        })
        .await
        .map_err(|e| store_error("schema status", e))?;
        let applied = if migrated {
            statement!(inner, |c| {
                sqlx::query_scalar(inner.sql.admin_schema_version.clone()).fetch_one(c)
            })
            .await
            .map_err(|e| store_error("schema status", e))?
        } else {
            0
        };
        Ok(PgSchemaStatus {
            schema: inner.schema.to_string(),
            applied,
            latest: crate::migrate::LATEST,
        })
    }

    /// The position of the newest event that log readers can be given now, `None` when
    /// there is none. Unlike [`EventStore::head`](es_core::EventStore::head), which is the
    /// newest committed event whatever holds it back, this is a safe place to start
    /// following the log from "now": an event of a transaction still open (older than the
    /// head's, say) sorts after it once it commits, so a subscription after this position
    /// delivers it, where one after the head would miss it.
    ///
    /// # Errors
    ///
    /// Fails if the server cannot be queried.
    pub async fn readable_head(&self) -> Result<Option<Position>, ReadError> {
        let inner = &self.store.inner;
        let row = statement!(inner, |c| {
            sqlx::query(inner.sql.admin_readable_head.clone()).fetch_optional(c)
        })
        .await
        .map_err(|e| store_error("readable head", e))?;
        row.as_ref().map(crate::row::position_of).transpose()
    }

    /// Up to `limit` streams in stream id order, of `category` only if given, after the
    /// stream `after` if given (to page on from the last one of a previous call).
    /// Archived streams are listed too, marked.
    ///
    /// # Errors
    ///
    /// Fails if the server cannot be queried.
    pub async fn streams(
        &self,
        category: Option<&str>,
        after: Option<&StreamId>,
        limit: u32,
    ) -> Result<Vec<PgStreamSummary>, StoreError> {
        let inner = &self.store.inner;
        let failed = |e| store_error("list streams", e);
        let after = after.map(StreamId::as_str);
        let rows = statement!(inner, |c| {
            sqlx::query(inner.sql.admin_streams.clone())
                .bind(category)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(c)
        })
        .await
        .map_err(failed)?;
        rows.iter()
            .map(|row| {
                let stream: String = row.try_get("stream_id").map_err(failed)?;
                let events: i64 = row.try_get("events").map_err(failed)?;
                let version: i64 = row.try_get("version").map_err(failed)?;
                Ok(PgStreamSummary {
                    stream_id: StreamId::parse(&stream)
                        .map_err(|e| StoreError::new("list streams", e))?,
                    events: u64::try_from(events).unwrap_or_default(),
                    version: Version::new(u64::try_from(version).unwrap_or_default()),
                    first_recorded_at: row.try_get("first_recorded_at").map_err(failed)?,
                    last_recorded_at: row.try_get("last_recorded_at").map_err(failed)?,
                    archived: row.try_get("archived").map_err(failed)?,
                })
            })
            .collect()
    }
}
