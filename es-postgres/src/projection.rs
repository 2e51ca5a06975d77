//! Transactional projections: read models in the same database, written in the
//! transaction that also moves their checkpoint.

use std::fmt;
use std::future::{Future, ready};

use es_core::error::BoxError;
use es_core::{DomainEvent, EventEnvelope, EventFilter, Position, Projection};
use sqlx::postgres::PgConnection;

use crate::checkout::{before, within};
use crate::error::{no_reply, store_error};
use crate::read_model::PgMigration;
#[cfg(doc)]
use crate::read_model::PgTable;
use crate::row::position_parts;
use crate::store::PgEventStore;
use crate::tx::PgTx;

/// A read model kept in PostgreSQL, updated inside the transaction the runner commits its
/// checkpoint in.
///
/// Wrap it in [`PgTransactionalProjection`] and run it with a
/// [`ProjectionRunner`](es_core::ProjectionRunner): every batch of events is handled in one
/// transaction that also moves the projection's checkpoint (in the store's `checkpoints`
/// table), so a crash at any point, or a lost connection, neither loses an event nor
/// applies one twice. The checkpoint only moves from the position this instance last saw,
/// so a second instance that slipped past the lease cannot commit a duplicate batch.
///
/// A read model declares its tables as [`migrations`](PgProjection::migrations), which
/// the runner applies in the store's schema before the first batch (each once, however
/// many instances start), and names them in statements through [`PgTable`]: no DDL to run
/// by hand, and no SQL text to build.
///
/// ```no_run
/// use es_core::error::BoxError;
/// use es_core::{EventEnvelope, ProjectionRunner, RawEvent};
/// use es_postgres::{PgEventStore, PgMigration, PgProjection, PgTransactionalProjection};
/// use sqlx::{PgConnection, SqlStr};
///
/// /// The table's steps, in order; never edit one that ran, add another.
/// const MIGRATIONS: &[PgMigration] = &[PgMigration::new(
///     1,
///     "event counts",
///     "CREATE TABLE {schema}.event_counts (stream_id text PRIMARY KEY, events bigint NOT NULL)",
/// )];
///
/// /// Counts events per stream in the table `event_counts` of the store's schema.
/// struct EventCounts {
///     count: SqlStr,
///     empty: SqlStr,
/// }
///
/// impl EventCounts {
///     fn new(store: &PgEventStore) -> Result<Self, es_postgres::PgInvalidTableName> {
///         let table = store.table("event_counts")?;
///         Ok(Self {
///             count: table.sql(
///                 "INSERT INTO {table} (stream_id, events) VALUES ($1, 1)
///                  ON CONFLICT (stream_id) DO UPDATE SET events = {table}.events + 1",
///             ),
///             empty: table.sql("TRUNCATE {table}"),
///         })
///     }
/// }
///
/// impl PgProjection for EventCounts {
///     type Event = RawEvent;
///
///     fn name(&self) -> &str {
///         "event-counts"
///     }
///
///     fn migrations(&self) -> &[PgMigration] {
///         MIGRATIONS
///     }
///
///     async fn handle(&mut self, tx: &mut PgConnection, envelope: &EventEnvelope<RawEvent>) -> Result<(), BoxError> {
///         sqlx::query(self.count.clone())
///             .bind(envelope.stream_id.as_str())
///             .execute(tx)
///             .await?;
///         Ok(())
///     }
///
///     async fn reset(&mut self, tx: &mut PgConnection) -> Result<(), BoxError> {
///         sqlx::query(self.empty.clone()).execute(tx).await?;
///         Ok(())
///     }
/// }
///
/// # async fn example(store: PgEventStore) -> Result<(), Box<dyn std::error::Error>> {
/// let projection = PgTransactionalProjection::new(store.clone(), EventCounts::new(&store)?);
/// ProjectionRunner::new(store, projection).run().await?;
/// # Ok(())
/// # }
/// ```
pub trait PgProjection: Send {
    /// The events it reads.
    type Event: DomainEvent;

    /// Its stable name: the key of its checkpoint (followed by `#index/count` when a
    /// runner is restricted to a partition, each partition keeping its own).
    fn name(&self) -> &str;

    /// The events it reads (by default, the event types `Self::Event` decodes).
    fn filter(&self) -> EventFilter {
        EventFilter::for_event::<Self::Event>()
    }

    /// The steps that make and change its tables, in order of version (none by default).
    ///
    /// [`PgTransactionalProjection`] applies those the store's schema has not applied yet,
    /// recorded under the projection's [`name`](PgProjection::name), before it loads its
    /// checkpoint (so before the first batch, at every runner start) and before a
    /// [`reset`](PgProjection::reset); see [`PgMigration`] for the placeholders, and
    /// [`PgEventStore::migrate_read_model`] to apply them at deployment instead. A step
    /// applied once is never applied again, nor taken back: a rebuild empties the tables
    /// through `reset`, it does not make them again.
    ///
    /// A refused or failing step stops the runner, whatever its error policy (for a
    /// runner keeping its checkpoint in memory, at the first batch's commit, which it
    /// fails with [`PgProjectionError::Database`] holding the refusal): the schema is at
    /// fault, not an event. The start waits for the schema's migration lock at most the
    /// store's reply deadline (60 s where it has none), then fails with
    /// [`PgProjectionError::MigrationLockTimeout`], which a live runner rides out.
    fn migrations(&self) -> &[PgMigration] {
        &[]
    }

    /// Updates the read model with one event, through `tx`, the batch's transaction.
    fn handle(
        &mut self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope<Self::Event>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Writes what [`handle`](PgProjection::handle) buffered, through `tx`, just before the
    /// batch's checkpoint moves in the same transaction.
    ///
    /// A projection may write each event straight through `tx` in `handle` (simplest: one
    /// statement per event), or collect its changes in `handle` and write them here in one
    /// statement per batch (fastest: a batch costs about as much as one event). A failure
    /// here fails the whole batch, which is rolled back and read again; it does not go
    /// through the runner's per-event error policy.
    fn flush(
        &mut self,
        tx: &mut PgConnection,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = tx;
        ready(Ok(()))
    }

    /// Forgets what [`handle`](PgProjection::handle) buffered since the last flush: the
    /// batch was rolled back.
    fn discard(&mut self) {}

    /// Empties the read model before a rebuild, through `tx` (which also removes its
    /// checkpoints, those of every partition included), for example with a
    /// `TRUNCATE {table}` completed by [`PgTable::sql`]. Its
    /// [`migrations`](PgProjection::migrations) were applied before.
    fn reset(
        &mut self,
        tx: &mut PgConnection,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = tx;
        ready(Ok(()))
    }
}

/// Why a transactional projection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgProjectionError {
    /// The projection's own code failed.
    #[error("projection `{projection}` failed")]
    Handler {
        /// The projection.
        projection: String,
        /// Its error.
        #[source]
        source: BoxError,
    },
    /// The database failed (a lost connection, a failed commit).
    #[error("projection `{projection}`: database failure")]
    Database {
        /// The projection.
        projection: String,
        /// The failure.
        #[source]
        source: es_core::StoreError,
    },
    /// Another instance moved the checkpoint since this one last saw it: this instance's
    /// batch would apply events twice, so it was rolled back.
    #[error("projection `{projection}`: another instance moved the checkpoint; batch rolled back")]
    Fenced {
        /// The projection.
        projection: String,
    },
    /// A migration of the read model's was applied from another text (or name) than the one
    /// it declares now ([`PgProjection::migrations`]): it was edited after it ran, so the
    /// tables may not be what the code expects. Nothing was applied.
    #[error(
        "read model `{projection}` in schema `{schema}` applied migration {version} (`{applied}`) from a different text than the one declared now (`{declared}`): an applied migration is never edited; restore it and put the change in a new migration with a higher version"
    )]
    MigrationEdited {
        /// The read model (the projection's name).
        projection: String,
        /// The schema.
        schema: String,
        /// The migration's version.
        version: u32,
        /// The name it was applied under.
        applied: String,
        /// The name it is declared under now.
        declared: &'static str,
    },
    /// The schema applied a migration of the read model's that its code does not declare:
    /// a newer release migrated it, or the migration was taken out of the list. Nothing
    /// was applied.
    #[error(
        "read model `{projection}` in schema `{schema}` applied migration {version} (`{name}`), which this code does not declare: run the release that migrated it, or declare the migration again"
    )]
    UnknownMigration {
        /// The read model (the projection's name).
        projection: String,
        /// The schema.
        schema: String,
        /// The migration's version.
        version: u32,
        /// The name it was applied under.
        name: String,
    },
    /// The read model declares a migration the schema has not applied with a lower version
    /// than one it has: applied now, it would run after that one here but before it on a
    /// fresh schema, so the two schemas could differ. Nothing was applied.
    #[error(
        "read model `{projection}` in schema `{schema}` declares migration {version} (`{name}`), not applied, below migration {highest}, applied already: a new migration must come after every applied one; give it a version above {highest}"
    )]
    MigrationBelowApplied {
        /// The read model (the projection's name).
        projection: String,
        /// The schema.
        schema: String,
        /// The version of the migration not applied.
        version: u32,
        /// Its name.
        name: &'static str,
        /// The highest version the schema applied.
        highest: u32,
    },
    /// A runner's start waited for the schema's migration lock as long as it may (the
    /// store's reply deadline, or 60 s where it has none) while another migration held
    /// it, a deployment's perhaps: transient, so a live runner shows it as recovering and
    /// tries again; a catch-up returns it. Nothing was applied.
    #[error(
        "read model `{projection}` in schema `{schema}`: waited {waited:?} for the schema's migration lock, which another migration holds; it starts once that one is done (or apply the read model's migrations at deployment with `migrate_read_model`)"
    )]
    MigrationLockTimeout {
        /// The read model (the projection's name).
        projection: String,
        /// The schema.
        schema: String,
        /// How long it waited.
        waited: std::time::Duration,
        /// The timeout, as a store failure of kind
        /// [`Timeout`](es_core::StoreErrorKind::Timeout).
        #[source]
        source: es_core::StoreError,
    },
    /// The read model declares its migrations out of order: versions start at 1 and
    /// increase (and fit an `i32`). Nothing was applied.
    #[error(
        "read model `{projection}` declares migration {version} after {previous}: migration versions start at 1 and increase"
    )]
    MigrationsOutOfOrder {
        /// The read model (the projection's name).
        projection: String,
        /// The version out of order.
        version: u32,
        /// The version declared before it (0 for none).
        previous: u32,
    },
}

impl PgProjectionError {
    /// Whether it is the database failing for a moment (a lost connection, a deadline,
    /// a migration lock held elsewhere): trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database { source, .. } | Self::MigrationLockTimeout { source, .. } => {
                source.is_transient()
            }
            _ => false,
        }
    }
}

/// What a projection's own code returned: a database failure of the moment (a killed
/// connection, a deadline) is the database's, which the runner rides out; anything else
/// is the projection's, which its error policy judges.
fn handler_error(projection: String, source: BoxError) -> PgProjectionError {
    // Wherever the sqlx error sits in the handler's error (it may wrap it in its own).
    match crate::error::kind_within(&*source) {
        es_core::StoreErrorKind::Other => PgProjectionError::Handler { projection, source },
        kind => PgProjectionError::Database {
            source: es_core::StoreError::new("projection", source)
                .with_kind(kind)
                .with_context(format!("projection `{projection}`")),
            projection,
        },
    }
}

/// Runs a [`PgProjection`] as an exactly-once [`Projection`]: its writes and its
/// checkpoint commit in one transaction per batch.
pub struct PgTransactionalProjection<P> {
    projection: P,
    store: PgEventStore,
    tx: Option<PgTx>,
    /// The checkpoint as this instance last loaded or committed it.
    seen: Option<Position>,
    /// Whether the projection's migrations are applied (checked once per instance).
    migrated: bool,
    /// Why the migrations failed in `handle` (a runner keeping its checkpoint in memory
    /// asks for no checkpoint to load, so `handle` is the first it calls): kept for the
    /// batch's `commit` to return, so that the failure stops (or, transient, restarts)
    /// the runner instead of being taken for the events' own and judged by its error
    /// policy. Until then the batch's events are not handled: it will not commit.
    failed_migration: Option<PgProjectionError>,
}

impl<P: fmt::Debug> fmt::Debug for PgTransactionalProjection<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTransactionalProjection")
            .field("projection", &self.projection)
            .field("in_transaction", &self.tx.is_some())
            .field("seen", &self.seen)
            .field("migrated", &self.migrated)
            .field("failed_migration", &self.failed_migration)
            .finish_non_exhaustive()
    }
}

impl<P: PgProjection> PgTransactionalProjection<P> {
    /// Runs `projection` on `store`'s database.
    pub fn new(store: PgEventStore, projection: P) -> Self {
        Self {
            projection,
            store,
            tx: None,
            seen: None,
            migrated: false,
            failed_migration: None,
        }
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The store's reply deadline, which every step of a batch keeps: a step that gets no
    /// answer in time drops the batch's transaction (its connection is closed) and fails
    /// as a timeout, which the runner rides out.
    fn deadline(&self) -> Option<std::time::Duration> {
        self.store.inner.reply_timeout
    }

    fn database_error(&self, operation: &'static str, error: sqlx::Error) -> PgProjectionError {
        PgProjectionError::Database {
            projection: self.projection.name().to_owned(),
            source: store_error(operation, error)
                .with_context(format!("projection `{}`", self.projection.name())),
        }
    }

    /// Applies the projection's migrations the schema lacks, once per instance, waiting
    /// a bounded time for the migration lock.
    async fn migrate(&mut self) -> Result<(), PgProjectionError> {
        if !self.migrated {
            let migrations = self.projection.migrations();
            crate::read_model::apply_at_start(&self.store, self.projection.name(), migrations)
                .await?;
            self.migrated = true;
        }
        Ok(())
    }

    /// `error`, from the migrations, as the batch's commit returns it: one that lasts (a
    /// refused or failing step) with a store failure that is not transient in its
    /// chain, which is what stops a runner whose commit failed, rather than starting it
    /// over to be refused again; a transient one as it is.
    fn stopping(&self, error: PgProjectionError) -> PgProjectionError {
        match error {
            PgProjectionError::Database { .. } | PgProjectionError::MigrationLockTimeout { .. } => {
                error
            }
            refused => PgProjectionError::Database {
                projection: self.projection.name().to_owned(),
                source: es_core::StoreError::new("read model migrations", refused)
                    .with_context(format!("projection `{}`", self.projection.name())),
            },
        }
    }

    /// Begins the batch's transaction unless one is open.
    async fn begin(&mut self) -> Result<(), PgProjectionError> {
        if self.tx.is_none() {
            let tx = within(self.deadline(), PgTx::begin(&self.store.inner.pool))
                .await
                .map_err(|e| self.database_error("projection transaction", e))?;
            self.tx = Some(tx);
        }
        Ok(())
    }
}

impl<P: PgProjection> Projection for PgTransactionalProjection<P> {
    type Event = P::Event;
    type Error = PgProjectionError;

    fn name(&self) -> &str {
        self.projection.name()
    }

    fn filter(&self) -> EventFilter {
        self.projection.filter()
    }

    async fn handle(
        &mut self,
        envelope: &EventEnvelope<P::Event>,
    ) -> Result<(), PgProjectionError> {
        let name = self.projection.name().to_owned();
        // Done at the checkpoint's load; here too for a runner that keeps the checkpoint
        // in memory (`with_checkpoint_in_memory`) and so never asks for it. A failure is
        // not this event's: it is kept for the commit to return (see `failed_migration`).
        if !self.migrated {
            if self.failed_migration.is_none()
                && let Err(error) = self.migrate().await
            {
                tracing::warn!(
                    projection = %name,
                    error = &error as &dyn std::error::Error,
                    "read model migrations failed; the runner stops at the batch's commit"
                );
                self.failed_migration = Some(error);
            }
            if self.failed_migration.is_some() {
                return Ok(());
            }
        }
        self.begin().await?;
        let Some(tx) = self.tx.as_mut() else {
            return Ok(());
        };
        let deadline = self.store.inner.reply_timeout;
        match before(deadline, self.projection.handle(tx, envelope)).await {
            Some(handled) => handled.map_err(|source| handler_error(name, source)),
            None => {
                self.tx = None;
                Err(self.database_error("projection", no_reply(deadline.unwrap_or_default())))
            }
        }
    }

    fn is_transient(&self, error: &PgProjectionError) -> bool {
        error.is_transient()
    }

    async fn reset(&mut self) -> Result<(), PgProjectionError> {
        self.rollback().await?;
        // A rebuild may be the first thing an instance does: its tables must be there
        // for `reset` to empty.
        self.migrate().await?;
        let name = self.projection.name().to_owned();
        // Every partition's checkpoint too (`name#index/count`): they all fed the read
        // model being reset.
        let delete = self.store.inner.sql.projection_reset.clone();
        let deadline = self.deadline();
        self.begin().await?;
        let Some(tx) = self.tx.as_mut() else {
            return Ok(());
        };
        match before(deadline, self.projection.reset(tx)).await {
            Some(Ok(())) => {}
            Some(Err(source)) => {
                self.rollback().await?;
                return Err(handler_error(name, source));
            }
            None => {
                self.tx = None;
                let elapsed = no_reply(deadline.unwrap_or_default());
                return Err(self.database_error("projection reset", elapsed));
            }
        }
        let Some(tx) = self.tx.as_mut() else {
            return Ok(());
        };
        let deleted = within(deadline, sqlx::query(delete).bind(&name).execute(&mut **tx)).await;
        if let Err(error) = deleted {
            self.tx = None;
            return Err(self.database_error("projection reset", error));
        }
        if let Some(tx) = self.tx.take() {
            within(deadline, tx.commit())
                .await
                .map_err(|e| self.database_error("projection reset", e))?;
        }
        self.seen = None;
        Ok(())
    }

    fn keeps_own_checkpoint(&self) -> bool {
        true
    }

    async fn load_checkpoint(&mut self, key: &str) -> Result<Option<Position>, PgProjectionError> {
        // Before the first batch: the runner loads the checkpoint at every start.
        self.migrate().await?;
        let loaded = es_core::CheckpointStore::load_checkpoint(&self.store, key)
            .await
            .map_err(|source| PgProjectionError::Database {
                projection: key.to_owned(),
                source,
            })?;
        self.seen = loaded;
        Ok(loaded)
    }

    /// The stored checkpoint only: no migrations (an instance standing by must not change
    /// the schema under the one running, say during a rolling deploy) and no fence moved.
    async fn committed_checkpoint(
        &mut self,
        key: &str,
    ) -> Result<Option<Position>, PgProjectionError> {
        es_core::CheckpointStore::load_checkpoint(&self.store, key)
            .await
            .map_err(|source| PgProjectionError::Database {
                projection: key.to_owned(),
                source,
            })
    }

    async fn commit(&mut self, key: &str, position: Position) -> Result<(), PgProjectionError> {
        if let Some(error) = self.failed_migration.take() {
            self.rollback().await?;
            return Err(self.stopping(error));
        }
        let name = key.to_owned();
        let fenced = || PgProjectionError::Fenced {
            projection: name.clone(),
        };
        let (major, minor) = position_parts(position).ok_or_else(fenced)?;
        // Move the checkpoint only from where this instance saw it.
        let statements = &self.store.inner.sql;
        let (sql, expected) = match self.seen.and_then(position_parts) {
            Some(expected) => (statements.checkpoint_advance.clone(), Some(expected)),
            None => (statements.checkpoint_start.clone(), None),
        };
        self.begin().await?;
        let Some(tx) = self.tx.as_mut() else {
            return Err(fenced());
        };
        let deadline = self.store.inner.reply_timeout;
        match before(deadline, self.projection.flush(tx)).await {
            Some(Ok(())) => {}
            Some(Err(source)) => {
                self.rollback().await?;
                return Err(handler_error(name, source));
            }
            None => {
                self.tx = None;
                let elapsed = no_reply(deadline.unwrap_or_default());
                return Err(self.database_error("projection flush", elapsed));
            }
        }
        let Some(tx) = self.tx.as_mut() else {
            return Err(fenced());
        };
        let mut query = sqlx::query(sql).bind(&name).bind(major).bind(minor);
        if let Some((old_major, old_minor)) = expected {
            query = query.bind(old_major).bind(old_minor);
        }
        let moved = within(deadline, query.execute(&mut **tx)).await;
        let moved = match moved {
            Ok(result) => result.rows_affected(),
            Err(error) => {
                self.tx = None;
                return Err(self.database_error("projection commit", error));
            }
        };
        if moved != 1 {
            self.rollback().await?;
            return Err(fenced());
        }
        if let Some(tx) = self.tx.take() {
            within(deadline, tx.commit())
                .await
                .map_err(|e| self.database_error("projection commit", e))?;
        }
        self.seen = Some(position);
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), PgProjectionError> {
        // The batch is dropped: its next start tries the migrations again.
        self.failed_migration = None;
        self.projection.discard();
        if let Some(tx) = self.tx.take()
            && let Err(error) = within(self.deadline(), tx.rollback()).await
        {
            // A broken connection rolls back on its own; nothing is left to undo.
            tracing::debug!(error = &error as &dyn std::error::Error, "rollback failed");
        }
        Ok(())
    }
}
