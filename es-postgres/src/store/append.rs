//! Appends: one statement per batch (or one transaction with inline projections). A
//! refused one is explained in `refusal`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use es_core::{
    AppendError, Backoff, Committed, DomainEvent, EventEnvelope, EventStore, ExpectedVersion,
    NewEvent, Position, RawEvent, ReadError, StoreError, StreamId, Version,
};
use serde_json::Value;
use sqlx::FromRow as _;
use sqlx::postgres::{PgConnection, PgRow};
use tracing::Instrument as _;
use uuid::Uuid;

use super::PgEventStore;
use super::conditional::Check;
use crate::checkout::{before, within};
use crate::error::{is_in_failed_transaction, is_write_race, store_error};
use crate::error::{no_reply, retry_serialization_failures};
use crate::inline::PgInlineProjection;
use crate::inner::statement;
use crate::row::{AppendedRow, PositionRow};
use crate::tx::PgTx;
use crate::xid::Xid8;

/// How many times an append with [`ExpectedVersion::Any`] is tried when concurrent writers
/// take the versions it computed. `Any` must not fail for a race; each retry sees the other
/// writers' commits and waits a jittered moment, so with dozens of racers on one stream all
/// get through long before this bound.
const ANY_RETRIES: u32 = 64;

/// The pauses between those tries: up to 400 µs after the first lost race, doubling to at
/// most 6.4 ms.
const ANY_BACKOFF: Backoff = Backoff::new(Duration::from_micros(400), Duration::from_micros(6_400));

impl PgEventStore {
    /// Appends `events`, in the span of an append ([`es_core::telemetry::APPEND_SPAN`]).
    pub(super) async fn append_batch<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
    ) -> Result<Committed<E>, AppendError> {
        let span = append_span(stream, events.len(), expected);
        self.append_in_span(stream, expected, events)
            .instrument(span)
            .await
    }

    pub(super) async fn append_in_span<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent<E>>,
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
        let batch = Batch::encode(stream, &mut events)?;
        self.refuse_overflow(stream, expected, events.len()).await?;

        let mut attempts = 0;
        loop {
            attempts += 1;
            let inserted = if self.inline_for(stream, &batch).is_empty() {
                let batch = &batch;
                statement!(self.inner, |c| self.insert_on(c, stream, expected, batch)).await
            } else {
                match self
                    .insert_with_inline(stream, expected, &batch, &events, None)
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
                            tokio::time::sleep(ANY_BACKOFF.pause(attempts)).await;
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

    /// Refuses a batch of `events` that would take `stream` past the last version: versions
    /// are bigints in the table, and this fails typed rather than as an overflow in the
    /// statement.
    pub(super) async fn refuse_overflow(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: usize,
    ) -> Result<(), AppendError> {
        let ExpectedVersion::Exact(version) = expected else {
            return Ok(());
        };
        if version.get().saturating_add(events as u64) <= Version::MAX.get() {
            return Ok(());
        }
        self.refuse_if_archived(stream).await?;
        let actual = self.current_version(stream).await?;
        Err(if actual == version {
            AppendError::StreamFull {
                stream: stream.clone(),
                version,
                events,
            }
        } else {
            AppendError::Conflict {
                stream: stream.clone(),
                expected,
                actual,
            }
        })
    }

    /// The inline projections that select some event of `batch` on `stream`.
    pub(super) fn inline_for(
        &self,
        stream: &StreamId,
        batch: &Batch,
    ) -> Vec<&Arc<dyn PgInlineProjection>> {
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
    /// again whole if the server aborts it as a serialization failure). With a `condition`,
    /// the insert is the conditional one, in a transaction begun at READ COMMITTED whatever
    /// the session's default, and its check comes before the projections' work (which
    /// cannot make it wrong: the check only needs to follow the insert).
    ///
    /// Each step has the reply deadline: beginning, the insert, each projection's work on
    /// the batch, the commit. A step cut short drops the transaction, whose connection is
    /// then closed ([`PgTx`]): nothing is stored, and the error is transient.
    pub(super) async fn insert_with_inline<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
        events: &[NewEvent<E>],
        condition: Option<&Check>,
    ) -> Result<Vec<PgRow>, Inserted> {
        let deadline = self.inner.reply_timeout;
        retry_serialization_failures(|| async move {
            let pool = &self.inner.pool;
            let mut tx = match condition {
                None => within(deadline, PgTx::begin(pool)).await?,
                Some(_) => within(deadline, PgTx::begin_read_committed(pool)).await?,
            };
            let insert = async {
                match condition {
                    None => self.insert_on(&mut tx, stream, expected, batch).await,
                    Some(check) => {
                        check
                            .append_on(&self.inner, &mut tx, stream, expected, batch)
                            .await
                    }
                }
            };
            let rows = match within(deadline, insert).await {
                Ok(rows) => rows,
                Err(error) => {
                    // A refused insert (a lost race, say) is the common failure: end the
                    // transaction so the connection stays in the pool.
                    let _ = within(deadline, tx.rollback()).await;
                    return Err(error);
                }
            };
            if rows.len() != events.len() {
                // Refused: the caller classifies it.
                within(deadline, tx.rollback()).await?;
                return Ok(Ok(rows));
            }
            let raw = raw_envelopes(stream, batch, events, &rows);
            let projections = self.inline_for(stream, batch);
            for projection in &projections {
                let filter = projection.filter();
                let selected: Vec<EventEnvelope<RawEvent>> = raw
                    .iter()
                    .filter(|e| filter.matches(&e.stream_id, &e.event.event_type))
                    .cloned()
                    .collect();
                let handled = before(deadline, projection.handle(&mut tx, &selected))
                    .await
                    .unwrap_or_else(|| Err(Box::new(no_reply(deadline.unwrap_or_default()))));
                if let Err(source) = handled {
                    let _ = within(deadline, tx.rollback()).await;
                    return Ok(Err(AppendError::Store {
                        stream: stream.clone(),
                        source: projection_failure(source).with_context(format!(
                            "projection `{}` on stream `{stream}`",
                            projection.name()
                        )),
                    }));
                }
            }
            // The projections ran on the append's transaction: one that swallowed an error
            // (the transaction is then aborted, and COMMIT rolls it back without a word),
            // or ended it, must not let the append report success.
            if !projections.is_empty()
                && let Err(refusal) = within(deadline, still_ours(&mut tx, &rows)).await?
            {
                let _ = within(deadline, tx.rollback()).await;
                return Ok(Err(AppendError::Store {
                    stream: stream.clone(),
                    source: refusal.with_context(format!("stream `{stream}`")),
                }));
            }
            // A conditional append's announcement covers its batch only: a projection that
            // appended events of its own would let a younger append on their tags miss them.
            if condition.is_some()
                && let Err(refusal) = within(
                    deadline,
                    Check::only_the_batch(&self.inner, &mut tx, events.len()),
                )
                .await?
            {
                let _ = within(deadline, tx.rollback()).await;
                return Ok(Err(AppendError::Store {
                    stream: stream.clone(),
                    source: refusal.with_context(format!("stream `{stream}`")),
                }));
            }
            within(deadline, tx.commit()).await?;
            Ok(Ok(rows))
        })
        .await
        .map_err(Inserted::Sql)?
        .map_err(Inserted::Projection)
    }

    pub(super) async fn insert_on(
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
                None => sqlx::query(sql.append_one_any.clone()).bind(stream.as_str()),
                Some(version) => sqlx::query(sql.append_one_exact.clone())
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
                .bind(&batch.traceparents[0])
                .bind(&batch.tags[0])
                .fetch_all(&mut *connection)
                .await;
        }
        let query = match version {
            None => sqlx::query(sql.append_any.clone()).bind(stream.as_str()),
            Some(version) => sqlx::query(sql.append_exact.clone())
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
            .bind(&batch.traceparents)
            .bind(&batch.tags)
            .fetch_all(&mut *connection)
            .await
    }

    /// [`AppendError::Archived`] if `stream` is archived.
    pub(super) async fn refuse_if_archived(&self, stream: &StreamId) -> Result<(), AppendError> {
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

    pub(super) async fn current_version(&self, stream: &StreamId) -> Result<Version, AppendError> {
        self.version_of(stream)
            .await
            .map_err(|source| AppendError::Store {
                stream: stream.clone(),
                source,
            })
    }

    pub(super) async fn version_of(&self, stream: &StreamId) -> Result<Version, StoreError> {
        let version: i64 = statement!(self.inner, |c| {
            sqlx::query_scalar(self.inner.sql.stream_version.clone())
                .bind(stream.as_str())
                .fetch_one(c)
        })
        .await
        .map_err(|e| store_error("stream version", e))?;
        Ok(Version::new(u64::try_from(version).unwrap_or_default()))
    }
}

/// The span of an append ([`es_core::telemetry::APPEND_SPAN`]), on either path: its
/// `coalesced` field is recorded only by the committer's ([`super::coalesce`]).
pub(super) fn append_span(
    stream: &StreamId,
    events: usize,
    expected: ExpectedVersion,
) -> tracing::Span {
    tracing::debug_span!(
        es_core::telemetry::APPEND_SPAN,
        %stream,
        events,
        %expected,
        coalesced = tracing::field::Empty,
    )
}

/// The columns of a batch, as the arrays the insert binds.
pub(super) struct Batch {
    pub(super) ids: Vec<Uuid>,
    pub(super) types: Vec<String>,
    pub(super) schema_versions: Vec<i32>,
    pub(super) payloads: Vec<Value>,
    pub(super) correlation_ids: Vec<Option<Uuid>>,
    pub(super) causation_ids: Vec<Option<Uuid>>,
    pub(super) actors: Vec<Option<String>>,
    pub(super) user_metadata: Vec<Value>,
    pub(super) traceparents: Vec<Option<String>>,
    /// Each event's tags (its final ones, merged by `encode_batch`), joined by U+001F,
    /// which no tag holds (tags have no control characters): the statements split them
    /// into the `text[]` column. `None` for an event without tags, stored as NULL.
    pub(super) tags: Vec<Option<String>>,
}

/// What joins an event's tags in [`Batch::tags`].
const TAG_SEPARATOR: &str = "\u{1f}";

impl Batch {
    /// The batch's columns, once every event passed the checks all stores make
    /// ([`es_core::limits::encode_batch`]).
    /// No events: the columns of a check that writes nothing.
    pub(super) fn empty() -> Self {
        Self {
            ids: Vec::new(),
            types: Vec::new(),
            schema_versions: Vec::new(),
            payloads: Vec::new(),
            correlation_ids: Vec::new(),
            causation_ids: Vec::new(),
            actors: Vec::new(),
            user_metadata: Vec::new(),
            traceparents: Vec::new(),
            tags: Vec::new(),
        }
    }

    pub(super) fn encode<E: DomainEvent>(
        stream: &StreamId,
        events: &mut [NewEvent<E>],
    ) -> Result<Self, AppendError> {
        let payloads = es_core::limits::encode_batch(stream, events)?;
        let events = &*events;
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
            traceparents: Vec::with_capacity(n),
            tags: Vec::with_capacity(n),
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
            // Always the canonical form (`TraceContext`'s `Display`): 55 bytes of hex digits and
            // dashes, never what a caller's header held beyond it.
            batch
                .traceparents
                .push(metadata.traceparent.map(|context| context.to_string()));
            batch.tags.push(joined(&metadata.tags));
        }
        Ok(batch)
    }
}

/// `tags` joined by [`TAG_SEPARATOR`], in order; `None` for none.
fn joined(tags: &std::collections::BTreeSet<es_core::Tag>) -> Option<String> {
    let mut tags = tags.iter();
    let first = tags.next()?;
    let mut text = first.as_str().to_owned();
    for tag in tags {
        text.push_str(TAG_SEPARATOR);
        text.push_str(tag.as_str());
    }
    Some(text)
}

/// The envelopes of a successful append, from the rows it returned.
pub(super) fn committed<E: DomainEvent>(
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
        let row = AppendedRow::from_row(row).map_err(|e| corrupt(e.to_string()))?;
        let position = row.at.to_position().map_err(|e| corrupt(e.to_string()))?;
        returned.push((row.version, position, row.recorded_at));
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

/// A failure of an inline projection's work, as the append's store error: a database
/// failure of the moment (anywhere in its sources) is the store's, which callers
/// (`Repository`) ride out; anything else is the projection's.
fn projection_failure(source: es_core::error::BoxError) -> StoreError {
    let kind = crate::error::kind_within(&*source);
    StoreError::new("inline projection", source).with_kind(kind)
}

/// Whether the append's transaction is still the one that inserted `rows`, and usable:
/// `Ok(Err(..))` says why not (an inline projection swallowed an error, or committed or
/// rolled back the store's transaction itself).
async fn still_ours(tx: &mut PgTx, rows: &[PgRow]) -> Result<Result<(), StoreError>, sqlx::Error> {
    let refused = |why: &str| Ok(Err(StoreError::new("inline projection", why.to_owned())));
    let current = sqlx::query_scalar::<_, Xid8>("SELECT pg_current_xact_id()")
        .fetch_one(&mut **tx)
        .await;
    let inserted_by = rows
        .first()
        .map(|row| PositionRow::from_row(row).map(|at| at.transaction_id));
    match (current, inserted_by) {
        (Ok(current), Some(Ok(inserted))) if current == inserted => Ok(Ok(())),
        (Ok(_), _) => refused(
            "an inline projection ended the append's transaction itself, so its events may or \
             may not be stored: append the same event ids again to find out",
        ),
        (Err(error), _) if is_in_failed_transaction(&error) => refused(
            "an inline projection let a statement fail and went on, which aborted the \
                 append's transaction; nothing was stored",
        ),
        (Err(error), _) => Err(error),
    }
}

/// Why an append with inline projections did not insert.
pub(super) enum Inserted {
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
            let row = AppendedRow::from_row(row).ok()?;
            Some((row.version, row.at.to_position().ok()?, row.recorded_at))
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
