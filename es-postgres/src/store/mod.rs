//! [`PgEventStore`]: the store, its public calls, and the [`EventStore`] contract; the
//! append internals, snapshots and the runner's tables live in the submodules.

use std::fmt;
use std::sync::Arc;

use es_core::{
    AppendCondition, AppendError, Committed, DomainEvent, EventEnvelope, EventFilter, EventStore,
    ExpectedVersion, NewEvent, Position, Query, ReadError, StoreError, StreamId, Version,
};
use futures_core::Stream;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::checkout::within;
use crate::error::{PgStoreError, retry_serialization_failures, store_error};
use crate::horizon::{self, PgHorizon};
use crate::inner::{Inner, statement};
use crate::query::QueryReader;
use crate::reader::{LogReader, filter_parameters};
use crate::row::{self, position_of};
use crate::schema::PgSchemaName;
use crate::stream_reader::StreamReader;
use crate::tx::PgTx;
use crate::xid::Xid8;

mod append;
mod builder;
pub(crate) mod coalesce;
mod conditional;
mod refusal;
mod runner_tables;
mod snapshots;

pub use builder::{PgEventStoreBuilder, PgPoolSettings, ping_after_idle};

/// An event store on PostgreSQL.
///
/// Cheap to clone: clones share the pool, the prepared statements and the wake-up
/// machinery. See the [crate docs](crate) for the schema and the guarantees.
#[derive(Clone)]
pub struct PgEventStore {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for PgEventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgEventStore")
            .field("schema", &self.inner.schema)
            .field("page_size", &self.inner.page_size)
            .field("poll_interval", &self.inner.poll_interval)
            .field("notify", &self.inner.wakeups.notifies())
            .finish_non_exhaustive()
    }
}

impl PgEventStore {
    /// A store on `pool` with default settings (schema `es`).
    ///
    /// The deadlines of its statements are the pool's: see [`PgPoolSettings`] for those
    /// the store sets on a pool it opens itself, and set them likewise on yours.
    pub fn new(pool: PgPool) -> Self {
        Self::builder(pool).build()
    }

    /// Configures a store on `pool`.
    pub fn builder(pool: PgPool) -> PgEventStoreBuilder {
        PgEventStoreBuilder::new(pool)
    }

    /// Configures a store that opens a pool of its own to `url`, with deadlines
    /// ([`PgPoolSettings`]); finish with [`connect`](PgEventStoreBuilder::connect).
    ///
    /// # Errors
    ///
    /// [`PgStoreError::Connect`] if `url` is not a PostgreSQL URL.
    pub fn builder_for_url(url: &str) -> Result<PgEventStoreBuilder<PgPoolSettings>, PgStoreError> {
        PgPoolSettings::parse(url).map(PgEventStoreBuilder::new)
    }

    /// Connects to `url` with the default [`PgPoolSettings`], in schema `es`: a pool of up
    /// to 10 connections (none kept open while idle; a call waits up to 5 s for one;
    /// connections idle 10 min or open 30 min are closed), their sessions at READ
    /// COMMITTED, statements cut off after 30 s, lock waits after 10 s, transactions left
    /// idle after 60 s. For any other size or deadline, use
    /// [`builder_for_url`](PgEventStore::builder_for_url) (or
    /// [`builder`](PgEventStore::builder) with a pool of your own):
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), es_postgres::PgStoreError> {
    /// let store = es_postgres::PgEventStore::builder_for_url("postgres://app@db/app")?
    ///     .max_connections(40)
    ///     .min_connections(5)
    ///     .connect()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`PgStoreError::Connect`] if the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, PgStoreError> {
        Self::builder_for_url(url)?.connect().await
    }

    /// Creates the schema and its tables, or upgrades them, through the embedded,
    /// versioned migrations; then the tables of the inline projections
    /// ([`PgInlineProjection::migrations`](crate::PgInlineProjection::migrations)).
    /// Idempotent, and safe to run from several processes at once.
    ///
    /// Changing the schema takes a role that may (its owner); a schema already up to date
    /// is only read, so an application role may call this at every start as well. See
    /// [`grant_application_role`](PgEventStore::grant_application_role) for running the
    /// application with less.
    ///
    /// # Errors
    ///
    /// Fails if a migration fails (the schema is then unchanged) or the schema was made by a
    /// newer es-postgres; [`PgStoreError::InlineProjection`] if an inline projection's
    /// migrations are refused or fail.
    pub async fn migrate(&self) -> Result<(), PgStoreError> {
        crate::migrate::run(&self.inner.pool, &self.inner.schema, &self.inner.sql).await?;
        for projection in &self.inner.inline {
            crate::read_model::apply(self, projection.name(), projection.migrations())
                .await
                .map_err(|source| PgStoreError::InlineProjection {
                    projection: projection.name().to_owned(),
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }

    /// Checks, reading only, that the schema is ready for this code and this role: every
    /// migration applied as this es-postgres has it, no transaction ids copied from another
    /// cluster, and the privileges the store uses granted. For an application role that
    /// may not migrate, at start.
    ///
    /// # Errors
    ///
    /// [`PgStoreError::SchemaBehind`], [`PgStoreError::SchemaTooNew`],
    /// [`PgStoreError::MigrationEdited`], [`PgStoreError::TransactionIdsAhead`],
    /// [`PgStoreError::MissingPrivileges`], or [`PgStoreError::Migrate`] if the server
    /// cannot be queried.
    pub async fn verify(&self) -> Result<(), PgStoreError> {
        self.administer(crate::migrate::verify(
            &self.inner.pool,
            &self.inner.schema,
            &self.inner.sql,
        ))
        .await
    }

    /// Grants `role` what running the application takes (run it as the schema's owner,
    /// after [`migrate`](PgEventStore::migrate)). It only grants: privileges the role holds
    /// otherwise (granted by hand, or by default privileges) stay, and
    /// [`verify`](PgEventStore::verify) checks what is missing, not what is more. Give the
    /// application a role of its own that holds nothing else:
    ///
    /// - the event log: `SELECT`, and `INSERT` of the columns an append writes only. The
    ///   position, the writing transaction's id and the recorded time are the server's to
    ///   assign, so the role cannot backdate an event, order it before others or hide it;
    ///   it cannot `UPDATE`, `DELETE` or `TRUNCATE` history;
    /// - archived streams: `SELECT`, and `INSERT` of the stream id (it may archive, not
    ///   un-archive or backdate an archive);
    /// - `EXECUTE` on the functions appends and log reads call;
    /// - snapshots: `SELECT`, `INSERT`, `UPDATE`; checkpoints, parked events and leases:
    ///   `SELECT`, `INSERT`, `UPDATE`, `DELETE`, as the store rewrites them as it works;
    /// - the migrations table: `SELECT`, for [`verify`](PgEventStore::verify);
    /// - subjects' keys ([`PgKeyStore`](crate::PgKeyStore)): `SELECT`, and `INSERT` of the
    ///   subject, key id and wrapped key (not `UPDATE` or `DELETE`: no one replaces a key);
    ///   the records of forgetting: `SELECT`; and `EXECUTE` on `es_forget_subject`, which
    ///   deletes a key and records it at once, the only way the role forgets.
    ///
    /// It cannot change the schema. The role must exist (`CREATE ROLE app LOGIN`).
    ///
    /// What the role can still do, if it bypasses the store and writes SQL itself: insert
    /// events that break the store's own rules (a version past the stream's next one, an
    /// event in an archived stream, a payload beyond the [limits](es_core::limits)), and
    /// write snapshots, checkpoints and leases the store then trusts. It is the writer of
    /// the events; what it cannot do is order, date, hide, rewrite or delete them.
    ///
    /// # Errors
    ///
    /// [`PgStoreError::Migrate`] if the grants fail (the role does not exist, or the
    /// current role may not grant).
    pub async fn grant_application_role(&self, role: &str) -> Result<(), PgStoreError> {
        self.administer(crate::migrate::grant_application_role(
            &self.inner.pool,
            &self.inner.schema,
            &self.inner.sql,
            role,
        ))
        .await
    }

    /// `call` within the reply deadline (migrations have none: a schema change on a large
    /// table may take long).
    async fn administer(
        &self,
        call: impl Future<Output = Result<(), PgStoreError>>,
    ) -> Result<(), PgStoreError> {
        let deadline = self.inner.reply_timeout;
        crate::checkout::before(deadline, call)
            .await
            .unwrap_or_else(|| {
                Err(PgStoreError::Migrate {
                    schema: self.inner.schema.to_string(),
                    source: crate::error::no_reply(deadline.unwrap_or_default()),
                })
            })
    }

    /// The pool. Connections the store keeps at hand between its calls (see
    /// [`PgEventStoreBuilder::keep_connections`]) are out of it, and not counted as idle,
    /// until unused for that long.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema.
    pub fn schema(&self) -> &PgSchemaName {
        &self.inner.schema
    }

    /// How far the global log is readable now, and what holds it back: a transaction open
    /// in this database (one in another database of the server does not count) delays
    /// delivery, never skips, and this names its session.
    ///
    /// # Errors
    ///
    /// Fails if the server cannot be queried.
    pub async fn horizon(&self) -> Result<PgHorizon, StoreError> {
        horizon::read(&self.inner).await
    }
}

impl EventStore for PgEventStore {
    async fn append<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
    ) -> Result<Committed<E>, AppendError> {
        match &self.inner.coalesce {
            Some(coalescer) => {
                self.append_coalesced(coalescer, stream, expected, events)
                    .await
            }
            None => self.append_batch(stream, expected, events).await,
        }
    }

    /// As the contract says, race-free under every isolation level: the check runs in a
    /// transaction at READ COMMITTED whatever the session's default, after the insert, and
    /// waits for transactions older than the append's that are still open (their events
    /// would sort before it). One round trip on the store's own pools; see
    /// `es-postgres/migrations/0008_tags.sql` for why it holds. A transaction left open
    /// in this database (idle in a transaction, say) holds conditional appends up as it
    /// holds log readers; after three quarters of the reply deadline (or 80% of the
    /// statement timeout, if shorter) the append fails with a transient error naming it.
    async fn append_if<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
        condition: AppendCondition,
    ) -> Result<Committed<E>, AppendError> {
        self.append_conditionally(stream, expected, events, &condition)
            .await
    }

    /// Reads by query from the GIN index on tags when every item of `query` has a tag;
    /// a query with an item of types only (or [`Query::all`]) scans the log after
    /// `after` instead, as an untagged event may match it. Below the horizon, like
    /// [`read_all`](EventStore::read_all): every position delivered is a resume point.
    fn read_query<E: DomainEvent>(
        &self,
        query: &Query,
        after: Position,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        use futures_util::StreamExt as _;
        match QueryReader::new(Arc::clone(&self.inner), query, after) {
            Some(reader) => reader.into_stream().left_stream(),
            None => futures_util::stream::empty().right_stream(),
        }
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, ReadError> {
        Ok(self.version_of(stream).await?)
    }

    fn read_stream<E: DomainEvent>(
        &self,
        stream: &StreamId,
        from: Version,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        StreamReader::new(Arc::clone(&self.inner), stream.clone(), from).into_stream()
    }

    fn read_all<E: DomainEvent>(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        LogReader::new(Arc::clone(&self.inner), after, &filter, false).into_stream()
    }

    fn subscribe<E: DomainEvent>(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        LogReader::new(Arc::clone(&self.inner), after, &filter, true).into_stream()
    }

    async fn count_after(&self, after: Position, filter: EventFilter) -> Result<u64, ReadError> {
        let (categories, types, partition) = filter_parameters(&filter);
        let (categories, types, filter) = (&categories, &types, &filter);
        let (transaction, sequence) = after.parts();
        let count: i64 = statement!(self.inner, |c| {
            sqlx::query_scalar(self.inner.sql.count_after.clone())
                .bind(Xid8(transaction))
                .bind(i64::try_from(sequence).unwrap_or(i64::MAX))
                .bind(categories.as_deref())
                .bind(types.as_deref())
                .bind(partition.map(|p| p.0))
                .bind(partition.map(|p| p.1))
                .bind(filter.includes_archived())
                .fetch_one(c)
        })
        .await
        .map_err(|e| {
            store_error("count", e).with_context(format!("the log after position {after}"))
        })?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn head(&self) -> Result<Option<Position>, ReadError> {
        let row = statement!(self.inner, |c| sqlx::query(self.inner.sql.head.clone())
            .fetch_optional(c))
        .await
        .map_err(|e| store_error("log head", e))?;
        row.as_ref().map(position_of).transpose()
    }

    async fn readable(&self, position: Position) -> Result<bool, ReadError> {
        let (transaction, _) = position.parts();
        let readable = statement!(self.inner, |c| {
            sqlx::query_scalar(self.inner.sql.readable.clone())
                .bind(Xid8(transaction))
                .fetch_one(c)
        })
        .await
        .map_err(|e| store_error("readable", e).with_context(format!("position {position}")))?;
        // Whoever waits for it (a catch-up) learns from `stall` what holds it back.
        if readable {
            self.inner.health.released();
        } else if self.inner.health.held_back() {
            crate::reader::describe_horizon(&self.inner).await;
        }
        Ok(readable)
    }

    fn stall(&self) -> Option<es_core::Stall> {
        self.inner.health.stall()
    }

    async fn archive_stream(&self, stream: &StreamId) -> Result<(), StoreError> {
        let sql = &self.inner.sql;
        let deadline = self.inner.reply_timeout;
        retry_serialization_failures(|| async move {
            let mut tx = within(deadline, PgTx::begin(&self.inner.pool)).await?;
            for statement in [&sql.archive_lock, &sql.archive_read, &sql.archive_stream] {
                let done = within(
                    deadline,
                    sqlx::query(statement.clone())
                        .bind(stream.as_str())
                        .execute(&mut *tx),
                )
                .await;
                if let Err(error) = done {
                    let _ = within(deadline, tx.rollback()).await;
                    return Err(error);
                }
            }
            within(deadline, tx.commit()).await
        })
        .await
        .map_err(|e| store_error("archive", e).with_context(format!("stream `{stream}`")))?;
        Ok(())
    }

    async fn is_archived(&self, stream: &StreamId) -> Result<bool, ReadError> {
        statement!(self.inner, |c| {
            sqlx::query_scalar(self.inner.sql.is_archived.clone())
                .bind(stream.as_str())
                .fetch_one(c)
        })
        .await
        .map_err(|e| {
            store_error("archive check", e)
                .with_context(format!("stream `{stream}`"))
                .into()
        })
    }

    async fn find_event<E: DomainEvent>(
        &self,
        event_id: Uuid,
    ) -> Result<Option<EventEnvelope<E>>, ReadError> {
        let row = statement!(self.inner, |c| {
            sqlx::query(self.inner.sql.find_event.clone())
                .bind(event_id)
                .fetch_optional(c)
        })
        .await
        .map_err(|e| store_error("find event", e))?;
        row.as_ref()
            .map(|row| row::envelope::<E>(row, None))
            .transpose()
    }
}
