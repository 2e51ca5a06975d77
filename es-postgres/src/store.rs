//! [`PgEventStore`]: appends, reads, snapshots and checkpoints on PostgreSQL.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use es_core::{
    AppendError, CheckpointStore, Committed, DeadLetterStore, DomainEvent, EventEnvelope,
    EventFilter, EventStore, ExpectedVersion, LeaseStore, NewEvent, ParkedEvent, Position,
    RawEvent, ReadError, Snapshot, SnapshotStore, StoreError, StreamId, Version,
};
use futures_core::Stream;
use serde_json::Value;
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::{AssertSqlSafe, Row as _};
use uuid::Uuid;

use crate::builder::{PgEventStoreBuilder, PgPoolSettings};
use crate::error::{PgStoreError, is_write_race, retry_serialization_failures, store_error};
use crate::health::ReaderHealth;
use crate::inline::PgInlineProjection;
use crate::reader::{LogReader, StreamReader, filter_parameters};
use crate::row::{self, position_of, position_parts};
use crate::schema::SchemaName;
use crate::sql::Statements;
use crate::tx::PgTx;
use crate::wakeup::Wakeups;
use crate::xid::Xid8;

/// How many times an append with [`ExpectedVersion::Any`] is tried when concurrent writers
/// take the versions it computed. `Any` must not fail for a race; each retry sees the other
/// writers' commits and waits a jittered moment, so with dozens of racers on one stream all
/// get through long before this bound.
const ANY_RETRIES: u32 = 64;

/// An event store on PostgreSQL.
///
/// Cheap to clone: clones share the pool, the prepared statements and the wake-up
/// machinery. See the [crate docs](crate) for the schema and the guarantees.
#[derive(Clone)]
pub struct PgEventStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    pub(crate) schema: SchemaName,
    pub(crate) sql: Statements,
    pub(crate) page_size: i64,
    pub(crate) poll_interval: Duration,
    pub(crate) wakeups: Wakeups,
    pub(crate) inline: Vec<Arc<dyn PgInlineProjection>>,
    /// What the store's log readers last found.
    pub(crate) health: ReaderHealth,
    /// How long a call waits for the server's reply before it gives up.
    pub(crate) reply_timeout: Duration,
}

impl Inner {
    /// Runs `statement` within the store's reply deadline, again after serialization
    /// failures (see [`retry_serialization_failures`]).
    pub(crate) async fn run<T, F, Fut>(&self, statement: F) -> Result<T, sqlx::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        retry_serialization_failures(self.reply_timeout, statement).await
    }
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

/// How far the global log is readable, and what holds it back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Horizon {
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
    pub held_by: Option<HorizonHolder>,
    /// The name (`gid`) of that transaction if it is a prepared (two-phase) one, which
    /// holds the log back until it is committed or rolled back (`COMMIT PREPARED`).
    pub prepared: Option<String>,
}

/// The session whose open transaction holds the log's horizon back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HorizonHolder {
    /// Its backend's process id (`pg_terminate_backend` takes it).
    pub pid: i32,
    /// Its database.
    pub database: Option<String>,
    /// Its `application_name`, if it set one.
    pub application: Option<String>,
    /// What it is doing (`active`, `idle in transaction`, ...), if the role may see it.
    pub state: Option<String>,
}

impl fmt::Display for Horizon {
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

    /// Connects to `url` with the default [`PgPoolSettings`] (up to 10 connections, their
    /// sessions at READ COMMITTED, statements cut off after 30 s, lock waits after 10 s),
    /// in schema `es`.
    ///
    /// # Errors
    ///
    /// [`PgStoreError::Connect`] if the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, PgStoreError> {
        Self::builder_for_url(url)?.connect().await
    }

    /// Creates the schema and its tables, or upgrades them, through the embedded,
    /// versioned migrations. Idempotent, and safe to run from several processes at once.
    ///
    /// Changing the schema takes a role that may (its owner); a schema already up to date
    /// is only read, so an application role may call this at every start as well. See
    /// [`grant_application_role`](PgEventStore::grant_application_role) for running the
    /// application with less.
    ///
    /// # Errors
    ///
    /// Fails if a migration fails (the schema is then unchanged) or the schema was made by a
    /// newer es-postgres.
    pub async fn migrate(&self) -> Result<(), PgStoreError> {
        crate::migrate::run(&self.inner.pool, &self.inner.schema)
            .await
            .map(drop)
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
        crate::migrate::verify(&self.inner.pool, &self.inner.schema).await
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
    /// - the migrations table: `SELECT`, for [`verify`](PgEventStore::verify).
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
        crate::migrate::grant_application_role(&self.inner.pool, &self.inner.schema, role).await
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema.
    pub fn schema(&self) -> &SchemaName {
        &self.inner.schema
    }

    /// The schema, quoted for SQL.
    pub(crate) fn schema_quoted(&self) -> String {
        self.inner.schema.quoted()
    }

    /// How far the global log is readable now, and what holds it back: a transaction open
    /// in this database (one in another database of the server does not count) delays
    /// delivery, never skips, and this names its session.
    ///
    /// # Errors
    ///
    /// Fails if the server cannot be queried.
    pub async fn horizon(&self) -> Result<Horizon, StoreError> {
        horizon(&self.inner).await
    }

    async fn append_batch<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
    ) -> Result<Committed<E>, AppendError> {
        if events.is_empty() {
            self.refuse_if_archived(stream).await?;
            let current = self.current_version(stream).await?;
            if !expected.matches(current) {
                return Err(AppendError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual: current,
                });
            }
            return Ok(Committed {
                stream_id: stream.clone(),
                version: current,
                events: Vec::new(),
                duplicate: false,
            });
        }
        let batch = Batch::encode(stream, &events)?;
        // Versions are bigints in the table: a batch that would go past the last one fails
        // here, typed, rather than as an overflow in the statement.
        if let ExpectedVersion::Exact(version) = expected
            && version.get().saturating_add(events.len() as u64) > Version::MAX.get()
        {
            self.refuse_if_archived(stream).await?;
            let actual = self.current_version(stream).await?;
            return Err(if actual == version {
                AppendError::StreamFull {
                    stream: stream.clone(),
                    version,
                    events: events.len(),
                }
            } else {
                AppendError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual,
                }
            });
        }

        let mut attempts = 0;
        loop {
            attempts += 1;
            let inserted = if self.inline_for(stream, &batch).is_empty() {
                self.inner
                    .run(|| self.insert(stream, expected, &batch))
                    .await
            } else {
                match self
                    .insert_with_inline(stream, expected, &batch, &events)
                    .await
                {
                    Ok(rows) => Ok(rows),
                    Err(Inserted::Sql(error)) => Err(error),
                    Err(Inserted::Projection(error)) => return Err(error),
                }
            };
            let rows = match inserted {
                Ok(rows) if rows.len() == events.len() => rows,
                // The guard found the stream short of the expected version.
                Ok(rows) if rows.is_empty() => {
                    return self.classify(stream, expected, &batch, &events).await;
                }
                Ok(rows) => {
                    return Err(AppendError::Store {
                        stream: stream.clone(),
                        source: StoreError::new(
                            "append",
                            format!("inserted {} rows for {} events", rows.len(), events.len()),
                        )
                        .with_context(format!("stream `{stream}`")),
                    });
                }
                Err(error) if is_write_race(&error) => {
                    match self.classify(stream, expected, &batch, &events).await {
                        Ok(repeat) => return Ok(repeat),
                        // Another writer took the versions an `Any` append computed; `Any`
                        // promises no conflict, and each retry sees that writer's commit.
                        Err(AppendError::Conflict { .. })
                            if expected == ExpectedVersion::Any && attempts < ANY_RETRIES =>
                        {
                            // Jittered, so that the racers spread out instead of colliding
                            // again in step.
                            let ceiling = 200_u64 << attempts.min(5);
                            tokio::time::sleep(Duration::from_micros(fastrand::u64(0..ceiling)))
                                .await;
                            continue;
                        }
                        Err(error) => return Err(error),
                    }
                }
                Err(error) => {
                    return Err(AppendError::Store {
                        stream: stream.clone(),
                        source: store_error("append", error)
                            .with_context(format!("stream `{stream}`")),
                    });
                }
            };
            self.inner.wakeups.appended();
            return committed(stream, events, &rows);
        }
    }

    /// The inline projections that select some event of `batch` on `stream`.
    fn inline_for(&self, stream: &StreamId, batch: &Batch) -> Vec<&Arc<dyn PgInlineProjection>> {
        self.inner
            .inline
            .iter()
            .filter(|projection| {
                let filter = projection.filter();
                batch.types.iter().any(|t| filter.matches(stream, t))
            })
            .collect()
    }

    /// Inserts the batch and runs the inline projections on it, in one transaction (run
    /// again whole if the server aborts it as a serialization failure).
    async fn insert_with_inline<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
        events: &[NewEvent<E>],
    ) -> Result<Vec<PgRow>, Inserted> {
        self.inner
            .run(|| async {
                let mut tx = PgTx::begin(&self.inner.pool).await?;
                let rows = match self.insert_on(&mut tx, stream, expected, batch).await {
                    Ok(rows) => rows,
                    Err(error) => {
                        // A refused insert (a lost race, say) is the common failure: end the
                        // transaction so the connection stays in the pool.
                        let _ = tx.rollback().await;
                        return Err(error);
                    }
                };
                if rows.len() != events.len() {
                    // Refused: the caller classifies it.
                    tx.rollback().await?;
                    return Ok(Ok(rows));
                }
                let raw = raw_envelopes(stream, batch, events, &rows);
                for projection in self.inline_for(stream, batch) {
                    let filter = projection.filter();
                    let selected: Vec<EventEnvelope<RawEvent>> = raw
                        .iter()
                        .filter(|e| filter.matches(&e.stream_id, &e.event.event_type))
                        .cloned()
                        .collect();
                    if let Err(source) = projection.handle(&mut tx, &selected).await {
                        let _ = tx.rollback().await;
                        // A database failure of the moment is the store's, which callers
                        // (Repository) ride out; anything else is the projection's.
                        let source = match source.downcast::<sqlx::Error>() {
                            Ok(error) => store_error("inline projection", *error),
                            Err(source) => StoreError::new("inline projection", source),
                        };
                        return Ok(Err(AppendError::Store {
                            stream: stream.clone(),
                            source: source.with_context(format!(
                                "projection `{}` on stream `{stream}`",
                                projection.name()
                            )),
                        }));
                    }
                }
                tx.commit().await?;
                Ok(Ok(rows))
            })
            .await
            .map_err(Inserted::Sql)?
            .map_err(Inserted::Projection)
    }

    async fn insert(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        let mut connection = self.inner.pool.acquire().await?;
        self.insert_on(&mut connection, stream, expected, batch)
            .await
    }

    async fn insert_on(
        &self,
        connection: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        let sql = &self.inner.sql;
        let version = match expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(0_i64),
            ExpectedVersion::Exact(version) => {
                Some(i64::try_from(version.get()).unwrap_or(i64::MAX))
            }
        };
        if batch.ids.len() == 1 {
            let query = match version {
                None => sqlx::query(AssertSqlSafe(Arc::clone(&sql.append_one_any)))
                    .bind(stream.as_str()),
                Some(version) => sqlx::query(AssertSqlSafe(Arc::clone(&sql.append_one_exact)))
                    .bind(stream.as_str())
                    .bind(version),
            };
            return query
                .bind(batch.ids[0])
                .bind(&batch.types[0])
                .bind(batch.schema_versions[0])
                .bind(&batch.payloads[0])
                .bind(batch.correlation_ids[0])
                .bind(batch.causation_ids[0])
                .bind(&batch.actors[0])
                .bind(&batch.user_metadata[0])
                .fetch_all(&mut *connection)
                .await;
        }
        let query = match version {
            None => sqlx::query(AssertSqlSafe(Arc::clone(&sql.append_any))).bind(stream.as_str()),
            Some(version) => sqlx::query(AssertSqlSafe(Arc::clone(&sql.append_exact)))
                .bind(stream.as_str())
                .bind(version),
        };
        query
            .bind(&batch.ids)
            .bind(&batch.types)
            .bind(&batch.schema_versions)
            .bind(&batch.payloads)
            .bind(&batch.correlation_ids)
            .bind(&batch.causation_ids)
            .bind(&batch.actors)
            .bind(&batch.user_metadata)
            .fetch_all(&mut *connection)
            .await
    }

    /// Explains a refused append: the batch is already stored (an idempotent repeat, which
    /// is success), an id is taken, or the version did not match.
    async fn classify<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
        events: &[NewEvent<E>],
    ) -> Result<Committed<E>, AppendError> {
        if let Some(repeat) = self.find_stored(stream, batch, events).await? {
            return Ok(repeat);
        }
        self.refuse_if_archived(stream).await?;
        Err(AppendError::Conflict {
            stream: stream.clone(),
            expected,
            actual: self.current_version(stream).await?,
        })
    }

    /// `Ok(None)` if none of the batch's ids is stored; the stored events if all are, in
    /// this stream, as one run; an error otherwise.
    ///
    /// Where the ids are is decided from the rows' plain columns: the stored events may be
    /// of another type (another category's), which only a true repeat needs to decode.
    async fn find_stored<E: DomainEvent>(
        &self,
        stream: &StreamId,
        batch: &Batch,
        events: &[NewEvent<E>],
    ) -> Result<Option<Committed<E>>, AppendError> {
        let store_failure = |source: StoreError| AppendError::Store {
            stream: stream.clone(),
            source: source.with_context(format!("stream `{stream}`")),
        };
        let rows = self
            .inner
            .run(|| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.inner.sql.find_events)))
                    .bind(&batch.ids)
                    .fetch_all(&self.inner.pool)
            })
            .await
            .map_err(|e| store_failure(store_error("append", e)))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut placed = Vec::with_capacity(rows.len());
        for row in &rows {
            let read = |e: sqlx::Error| store_failure(store_error("append", e));
            let event_id: Uuid = row.try_get(4).map_err(read)?;
            let stored_in: &str = row.try_get(2).map_err(read)?;
            let version: i64 = row.try_get(3).map_err(read)?;
            placed.push((event_id, stored_in, version));
        }
        // The batch in order, all in this stream, at consecutive versions.
        let is_repeat = placed.len() == events.len()
            && placed.iter().zip(events).enumerate().all(|(i, (p, e))| {
                p.1 == stream.as_str() && p.0 == e.event_id && p.2 == placed[0].2 + i as i64
            });
        if !is_repeat {
            let (event_id, stored_in, version) = placed
                .iter()
                .find(|p| p.1 != stream.as_str())
                .unwrap_or(&placed[0]);
            return Err(AppendError::DuplicateEventId {
                event_id: *event_id,
                stream: stream.clone(),
                existing_stream: StreamId::parse(stored_in)
                    .map_err(|e| store_failure(StoreError::new("append", e)))?,
                existing_version: Version::new(u64::try_from(*version).unwrap_or_default()),
            });
        }
        let stored = rows
            .iter()
            .map(|row| row::envelope::<E>(row, Some(stream)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| store_failure(StoreError::new("idempotent append", e)))?;
        let version = stored.last().map_or(Version::INITIAL, |e| e.version);
        Ok(Some(Committed {
            stream_id: stream.clone(),
            version,
            events: stored,
            duplicate: true,
        }))
    }

    /// [`AppendError::Archived`] if `stream` is archived.
    async fn refuse_if_archived(&self, stream: &StreamId) -> Result<(), AppendError> {
        match self.is_archived(stream).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(AppendError::Archived {
                stream: stream.clone(),
            }),
            Err(ReadError::Store(source)) => Err(AppendError::Store {
                stream: stream.clone(),
                source,
            }),
            Err(error) => Err(AppendError::Store {
                stream: stream.clone(),
                source: StoreError::new("append", error),
            }),
        }
    }

    async fn current_version(&self, stream: &StreamId) -> Result<Version, AppendError> {
        self.version_of(stream)
            .await
            .map_err(|source| AppendError::Store {
                stream: stream.clone(),
                source,
            })
    }

    async fn version_of(&self, stream: &StreamId) -> Result<Version, StoreError> {
        let version: i64 = self
            .inner
            .run(|| {
                sqlx::query_scalar(AssertSqlSafe(Arc::clone(&self.inner.sql.stream_version)))
                    .bind(stream.as_str())
                    .fetch_one(&self.inner.pool)
            })
            .await
            .map_err(|e| store_error("stream version", e))?;
        Ok(Version::new(u64::try_from(version).unwrap_or_default()))
    }
}

/// The columns of a batch, as the arrays the insert binds.
struct Batch {
    ids: Vec<Uuid>,
    types: Vec<String>,
    schema_versions: Vec<i32>,
    payloads: Vec<Value>,
    correlation_ids: Vec<Option<Uuid>>,
    causation_ids: Vec<Option<Uuid>>,
    actors: Vec<Option<String>>,
    user_metadata: Vec<Value>,
}

impl Batch {
    /// The batch's columns, once every event passed the checks all stores make
    /// ([`es_core::limits::encode_batch`]).
    fn encode<E: DomainEvent>(
        stream: &StreamId,
        events: &[NewEvent<E>],
    ) -> Result<Self, AppendError> {
        let payloads = es_core::limits::encode_batch(stream, events)?;
        let n = events.len();
        let mut batch = Self {
            ids: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            schema_versions: Vec::with_capacity(n),
            payloads,
            correlation_ids: Vec::with_capacity(n),
            causation_ids: Vec::with_capacity(n),
            actors: Vec::with_capacity(n),
            user_metadata: Vec::with_capacity(n),
        };
        for new in events {
            batch.ids.push(new.event_id);
            batch.types.push(new.event.event_type().to_owned());
            // Checked against `MAX_SCHEMA_VERSION`, which is `i32::MAX`.
            batch
                .schema_versions
                .push(i32::try_from(new.event.schema_version()).unwrap_or(i32::MAX));
            let metadata = &new.metadata;
            batch.correlation_ids.push(metadata.correlation_id);
            batch.causation_ids.push(metadata.causation_id);
            batch.actors.push(metadata.actor.clone());
            batch
                .user_metadata
                .push(Value::Object(metadata.user.clone()));
        }
        Ok(batch)
    }
}

/// The envelopes of a successful append, from the rows it returned.
fn committed<E: DomainEvent>(
    stream: &StreamId,
    events: Vec<NewEvent<E>>,
    rows: &[PgRow],
) -> Result<Committed<E>, AppendError> {
    let corrupt = |detail: String| AppendError::Store {
        stream: stream.clone(),
        source: StoreError::new("append", detail),
    };
    let mut returned = Vec::with_capacity(rows.len());
    for row in rows {
        let position = position_of(row).map_err(|e| corrupt(e.to_string()))?;
        let version: i64 = row.try_get(2).map_err(|e| corrupt(e.to_string()))?;
        let recorded_at: DateTime<Utc> = row.try_get(3).map_err(|e| corrupt(e.to_string()))?;
        returned.push((version, position, recorded_at));
    }
    // RETURNING follows insertion order, which follows the batch; sorting by version
    // makes that explicit rather than assumed.
    returned.sort_by_key(|(version, _, _)| *version);
    let mut envelopes = Vec::with_capacity(events.len());
    for (new, (version, position, recorded_at)) in events.into_iter().zip(returned) {
        envelopes.push(EventEnvelope {
            event_id: new.event_id,
            stream_id: stream.clone(),
            version: Version::new(u64::try_from(version).unwrap_or_default()),
            position,
            recorded_at,
            metadata: new.metadata,
            event: new.event,
        });
    }
    let version = envelopes.last().map_or(Version::INITIAL, |e| e.version);
    Ok(Committed {
        stream_id: stream.clone(),
        version,
        events: envelopes,
        duplicate: false,
    })
}

impl EventStore for PgEventStore {
    async fn append<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
    ) -> Result<Committed<E>, AppendError> {
        self.append_batch(stream, expected, events).await
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
        let (transaction, sequence) = after.parts();
        let count: i64 = self
            .inner
            .run(|| {
                sqlx::query_scalar(AssertSqlSafe(Arc::clone(&self.inner.sql.count_after)))
                    .bind(Xid8(transaction))
                    .bind(i64::try_from(sequence).unwrap_or(i64::MAX))
                    .bind(categories.as_deref())
                    .bind(types.as_deref())
                    .bind(partition.map(|p| p.0))
                    .bind(partition.map(|p| p.1))
                    .bind(filter.includes_archived())
                    .fetch_one(&self.inner.pool)
            })
            .await
            .map_err(|e| {
                store_error("count", e).with_context(format!("the log after position {after}"))
            })?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn head(&self) -> Result<Option<Position>, ReadError> {
        let row = self
            .inner
            .run(|| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.inner.sql.head)))
                    .fetch_optional(&self.inner.pool)
            })
            .await
            .map_err(|e| store_error("log head", e))?;
        row.as_ref().map(position_of).transpose()
    }

    async fn readable(&self, position: Position) -> Result<bool, ReadError> {
        let (transaction, _) = position.parts();
        let readable = self
            .inner
            .run(|| {
                sqlx::query_scalar(AssertSqlSafe(Arc::clone(&self.inner.sql.readable)))
                    .bind(Xid8(transaction))
                    .fetch_one(&self.inner.pool)
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
        self.inner
            .run(|| async {
                let mut tx = PgTx::begin(&self.inner.pool).await?;
                for statement in [&sql.archive_lock, &sql.archive_read, &sql.archive_stream] {
                    let done = sqlx::query(AssertSqlSafe(Arc::clone(statement)))
                        .bind(stream.as_str())
                        .execute(&mut *tx)
                        .await;
                    if let Err(error) = done {
                        let _ = tx.rollback().await;
                        return Err(error);
                    }
                }
                tx.commit().await
            })
            .await
            .map_err(|e| store_error("archive", e).with_context(format!("stream `{stream}`")))?;
        Ok(())
    }

    async fn is_archived(&self, stream: &StreamId) -> Result<bool, ReadError> {
        self.inner
            .run(|| {
                sqlx::query_scalar(AssertSqlSafe(Arc::clone(&self.inner.sql.is_archived)))
                    .bind(stream.as_str())
                    .fetch_one(&self.inner.pool)
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
        let row = self
            .inner
            .run(|| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.inner.sql.find_event)))
                    .bind(event_id)
                    .fetch_optional(&self.inner.pool)
            })
            .await
            .map_err(|e| store_error("find event", e))?;
        row.as_ref()
            .map(|row| row::envelope::<E>(row, None))
            .transpose()
    }
}

impl SnapshotStore for PgEventStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let version = i64::try_from(snapshot.version.get())
            .map_err(|e| StoreError::new("snapshot save", e))?;
        let schema_version = i32::try_from(snapshot.schema_version)
            .map_err(|e| StoreError::new("snapshot save", e))?;
        self.inner
            .run(|| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.inner.sql.save_snapshot)))
                    .bind(snapshot.stream_id.as_str())
                    .bind(version)
                    .bind(schema_version)
                    .bind(&snapshot.state)
                    .bind(snapshot.taken_at)
                    .execute(&self.inner.pool)
            })
            .await
            .map_err(|e| store_error("snapshot save", e))?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let row = self
            .inner
            .run(|| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.inner.sql.load_snapshot)))
                    .bind(stream.as_str())
                    .fetch_optional(&self.inner.pool)
            })
            .await
            .map_err(|e| store_error("snapshot load", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let decode = |e: sqlx::Error| store_error("snapshot load", e);
        let version: i64 = row.try_get(0).map_err(decode)?;
        let schema_version: i32 = row.try_get(1).map_err(decode)?;
        let state: Value = row.try_get(2).map_err(decode)?;
        let taken_at: DateTime<Utc> = row.try_get(3).map_err(decode)?;
        Ok(Some(Snapshot {
            stream_id: stream.clone(),
            version: Version::new(u64::try_from(version).unwrap_or_default()),
            schema_version: u32::try_from(schema_version).unwrap_or_default(),
            state,
            taken_at,
        }))
    }
}

impl CheckpointStore for PgEventStore {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
        let row = self
            .inner
            .run(|| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.inner.sql.load_checkpoint)))
                    .bind(name)
                    .fetch_optional(&self.inner.pool)
            })
            .await
            .map_err(|e| store_error("checkpoint load", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let decode = |e: sqlx::Error| store_error("checkpoint load", e);
        let major: i64 = row.try_get(0).map_err(decode)?;
        let minor: i64 = row.try_get(1).map_err(decode)?;
        Ok(Some(Position::from_parts(
            u64::try_from(major).unwrap_or_default(),
            u64::try_from(minor).unwrap_or_default(),
        )))
    }

    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), StoreError> {
        let (major, minor) = position_parts(position).ok_or_else(|| {
            StoreError::new(
                "checkpoint save",
                format!("position {position} does not fit in PostgreSQL bigints"),
            )
        })?;
        self.inner
            .run(|| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.inner.sql.save_checkpoint)))
                    .bind(name)
                    .bind(major)
                    .bind(minor)
                    .execute(&self.inner.pool)
            })
            .await
            .map_err(|e| store_error("checkpoint save", e))?;
        Ok(())
    }

    async fn delete_checkpoint(&self, name: &str) -> Result<(), StoreError> {
        self.inner
            .run(|| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.inner.sql.delete_checkpoint)))
                    .bind(name)
                    .execute(&self.inner.pool)
            })
            .await
            .map_err(|e| store_error("checkpoint delete", e))?;
        Ok(())
    }
}

impl DeadLetterStore for PgEventStore {
    async fn park(&self, parked: ParkedEvent) -> Result<(), StoreError> {
        let context = format!(
            "event {} of projection `{}`",
            parked.event_id, parked.projection
        );
        let (major, minor) = position_parts(parked.position).ok_or_else(|| {
            StoreError::new("park", "position beyond bigint").with_context(context.clone())
        })?;
        let version = i64::try_from(parked.version.get()).unwrap_or(i64::MAX);
        let attempts = i32::try_from(parked.attempts).unwrap_or(i32::MAX);
        self.inner
            .run(|| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.inner.sql.park)))
                    .bind(&parked.projection)
                    .bind(parked.event_id)
                    .bind(parked.stream_id.as_str())
                    .bind(version)
                    .bind(major)
                    .bind(minor)
                    .bind(&parked.event_type)
                    .bind(&parked.error)
                    .bind(attempts)
                    .bind(parked.parked_at)
                    .execute(&self.inner.pool)
            })
            .await
            .map_err(|e| store_error("park", e).with_context(context))?;
        Ok(())
    }

    async fn parked(&self, projection: &str) -> Result<Vec<ParkedEvent>, StoreError> {
        let failed = |e: sqlx::Error| {
            store_error("parked events read", e).with_context(format!("projection `{projection}`"))
        };
        let rows = self
            .inner
            .run(|| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.inner.sql.parked)))
                    .bind(projection)
                    .fetch_all(&self.inner.pool)
            })
            .await
            .map_err(failed)?;
        let mut parked = Vec::with_capacity(rows.len());
        for row in rows {
            let stream: String = row.try_get(1).map_err(failed)?;
            let version: i64 = row.try_get(2).map_err(failed)?;
            let major: i64 = row.try_get(3).map_err(failed)?;
            let minor: i64 = row.try_get(4).map_err(failed)?;
            let attempts: i32 = row.try_get(7).map_err(failed)?;
            parked.push(ParkedEvent {
                projection: projection.to_owned(),
                event_id: row.try_get(0).map_err(failed)?,
                stream_id: StreamId::parse(&stream)
                    .map_err(|e| StoreError::new("parked events read", e))?,
                version: Version::new(u64::try_from(version).unwrap_or_default()),
                position: Position::from_parts(
                    u64::try_from(major).unwrap_or_default(),
                    u64::try_from(minor).unwrap_or_default(),
                ),
                event_type: row.try_get(5).map_err(failed)?,
                error: row.try_get(6).map_err(failed)?,
                attempts: u32::try_from(attempts).unwrap_or_default(),
                parked_at: row.try_get(8).map_err(failed)?,
            });
        }
        Ok(parked)
    }

    async fn unpark(&self, projection: &str, event_id: Uuid) -> Result<(), StoreError> {
        self.inner
            .run(|| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.inner.sql.unpark)))
                    .bind(projection)
                    .bind(event_id)
                    .execute(&self.inner.pool)
            })
            .await
            .map_err(|e| {
                store_error("unpark", e)
                    .with_context(format!("event {event_id} of projection `{projection}`"))
            })?;
        Ok(())
    }
}

/// The longest lease the store records: longer TTLs are cut to it.
const LONGEST_LEASE: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

impl PgEventStore {
    /// Runs `sql`, a lease statement binding name, owner and milliseconds, which returns a
    /// row when `owner` holds the lease afterwards.
    async fn lease_statement(
        &self,
        sql: &Arc<str>,
        operation: &'static str,
        name: &str,
        owner: Uuid,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        // PostgreSQL's intervals and timestamps end long before `Duration::MAX` (which
        // failed with "interval out of range"); a century is as good as never expiring.
        let ttl = ttl.min(LONGEST_LEASE);
        let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let held = self
            .inner
            .run(|| {
                sqlx::query(AssertSqlSafe(Arc::clone(sql)))
                    .bind(name)
                    .bind(owner)
                    .bind(millis)
                    .fetch_optional(&self.inner.pool)
            })
            .await
            .map_err(|e| store_error(operation, e).with_context(format!("lease `{name}`")))?;
        Ok(held.is_some())
    }
}

impl LeaseStore for PgEventStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: Uuid,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.lease_statement(&self.inner.sql.acquire_lease, "lease", name, owner, ttl)
            .await
    }

    async fn renew_lease(
        &self,
        name: &str,
        owner: Uuid,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.lease_statement(
            &self.inner.sql.renew_lease,
            "lease renewal",
            name,
            owner,
            ttl,
        )
        .await
    }

    async fn release_lease(&self, name: &str, owner: Uuid) -> Result<(), StoreError> {
        self.inner
            .run(|| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.inner.sql.release_lease)))
                    .bind(name)
                    .bind(owner)
                    .execute(&self.inner.pool)
            })
            .await
            .map_err(|e| store_error("lease release", e).with_context(format!("lease `{name}`")))?;
        Ok(())
    }
}

/// [`PgEventStore::horizon`], for the store's readers too.
pub(crate) async fn horizon(inner: &Inner) -> Result<Horizon, StoreError> {
    let row = inner
        .run(|| sqlx::query(AssertSqlSafe(Arc::clone(&inner.sql.horizon))).fetch_one(&inner.pool))
        .await
        .map_err(|e| store_error("horizon", e))?;
    let read = |e| store_error("horizon", e);
    let horizon: String = row.try_get(0).map_err(read)?;
    let waiting: i64 = row.try_get(1).map_err(read)?;
    let pid: Option<i32> = row.try_get(2).map_err(read)?;
    let oldest_running_transaction = horizon.parse().map_err(|_| {
        StoreError::new(
            "horizon",
            format!("the server gave the horizon as {horizon:?}"),
        )
    })?;
    Ok(Horizon {
        oldest_running_transaction,
        events_waiting: u64::try_from(waiting).unwrap_or_default(),
        prepared: row.try_get(7).map_err(read)?,
        oldest_transaction_age: row.try_get(6).map_err(read)?,
        held_by: match pid {
            Some(pid) => Some(HorizonHolder {
                pid,
                database: row.try_get(3).map_err(read)?,
                application: row.try_get(4).map_err(read)?,
                state: row.try_get(5).map_err(read)?,
            }),
            None => None,
        },
    })
}

/// Why an append with inline projections did not insert.
enum Inserted {
    /// The statement failed (classified like any append's failure).
    Sql(sqlx::Error),
    /// An inline projection failed: the append fails with this.
    Projection(AppendError),
}

/// The batch's events as raw envelopes, for inline projections.
fn raw_envelopes<E: DomainEvent>(
    stream: &StreamId,
    batch: &Batch,
    events: &[NewEvent<E>],
    rows: &[PgRow],
) -> Vec<EventEnvelope<RawEvent>> {
    let mut placed: Vec<(i64, Position, DateTime<Utc>)> = rows
        .iter()
        .filter_map(|row| {
            Some((
                row.try_get(2).ok()?,
                position_of(row).ok()?,
                row.try_get(3).ok()?,
            ))
        })
        .collect();
    placed.sort_by_key(|(version, _, _)| *version);
    events
        .iter()
        .zip(placed)
        .enumerate()
        .map(
            |(i, (new, (version, position, recorded_at)))| EventEnvelope {
                event_id: new.event_id,
                stream_id: stream.clone(),
                version: Version::new(u64::try_from(version).unwrap_or_default()),
                position,
                recorded_at,
                metadata: new.metadata.clone(),
                event: RawEvent::new(
                    batch.types[i].clone(),
                    u32::try_from(batch.schema_versions[i]).unwrap_or_default(),
                    batch.payloads[i].clone(),
                ),
            },
        )
        .collect()
}
