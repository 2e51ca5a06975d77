//! Conditional appends ([`EventStore::append_if`](es_core::EventStore::append_if)): the
//! batch and its condition's check in one statement, `es_append_if` (migration 0008, where
//! the reasoning that makes it race-free is written down).
//!
//! Round trips: one, the statement, when the pool's sessions are at READ COMMITTED (the
//! store's own pools are) and no inline projection sees the batch. Otherwise three: a
//! transaction begun at READ COMMITTED whatever the session's default, the statement (the
//! inline projections' work after it), and the commit. A session found at another level
//! the first time makes the store begin such a transaction from then on.
//!
//! What the statement trusts (migration 0008 says why): the advisory locks other
//! conditional appends hold. Any session allowed `pg_advisory_lock` (PUBLIC by default)
//! can take the key by which a transaction says "my events are this batch", and so make
//! conditional appends skip waiting for that transaction; where untrusted roles reach the
//! database, revoke the advisory lock functions from PUBLIC and grant them to the
//! application role. The tags' lock keys are hashes that every role sees in `pg_locks`: a
//! tag value from a small domain can be confirmed by hashing guesses.

use std::sync::atomic::Ordering;
use std::time::Duration;

use es_core::{
    AppendCondition, AppendError, Backoff, Committed, DomainEvent, ExpectedVersion, NewEvent,
    Position, StoreError, StoreErrorKind, StreamId,
};
use sqlx::postgres::{PgConnection, PgRow};
use tracing::Instrument as _;

use super::PgEventStore;
use super::append::{Batch, Inserted, committed};
use crate::error::{ConditionalRefusal, conditional_refusal, detail, is_write_race, store_error};
use crate::inner::{Inner, statement};
use crate::query::QueryParameters;
use crate::xid::Xid8;

/// How many times a conditional append is tried when it gives way to an older transaction
/// waiting for it, or when concurrent writers take the versions an `Any` append computed.
const RETRIES: u32 = 64;

/// The pauses between those tries (as for `Any` appends).
const RETRY_BACKOFF: Backoff =
    Backoff::new(Duration::from_micros(400), Duration::from_micros(6_400));

/// The pauses of a conditional append waiting, inside its statement, for older
/// transactions to end: they are mostly committing, which takes well under a millisecond.
const WAIT_BACKOFF: Backoff = Backoff::new(Duration::from_micros(100), Duration::from_millis(2));

/// How many of those pauses each statement is given (the second half is used again once
/// they run out; by then they are all near the longest).
const WAIT_PAUSES: u32 = 16;

/// How long the statement waits for older transactions when the store has no reply
/// deadline (the session's statement timeout, if shorter, bounds it too).
const WAIT_WITHOUT_DEADLINE: Duration = Duration::from_secs(60);

/// How `es_append_if`'s DETAIL begins when the wait that ran out was the announcement's
/// (for a tag lock a younger check holds), not the wait for an older transaction.
const ANNOUNCEMENT_HELD: &str = "tag lock held by ";

/// A condition as the statement binds it.
pub(crate) struct Check {
    query: QueryParameters,
    /// The condition's query, as errors show it (types and tag keys only).
    text: String,
    after: Option<Position>,
    /// `after` as the statement takes it (the start of the log for `None`).
    after_parts: (u64, i64),
}

impl Check {
    /// The check of `condition`; `None` when its query selects nothing, so that it can
    /// never fail.
    fn new(condition: &AppendCondition) -> Option<Self> {
        let query = QueryParameters::new(&condition.fail_if_events_match)?;
        let (transaction, sequence) = condition.after.unwrap_or(Position::START).parts();
        Some(Self {
            query,
            text: condition.fail_if_events_match.to_string(),
            after: condition.after,
            after_parts: (transaction, i64::try_from(sequence).unwrap_or(i64::MAX)),
        })
    }

    /// Runs the conditional append of `batch` (or, with `batch` `None`, the check alone) on
    /// `connection`.
    pub(super) async fn append_on(
        &self,
        inner: &Inner,
        connection: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        let expected = match expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(0_i64),
            ExpectedVersion::Exact(version) => {
                Some(i64::try_from(version.get()).unwrap_or(i64::MAX))
            }
        };
        let pauses: Vec<f64> = (1..=WAIT_PAUSES)
            .map(|retry| WAIT_BACKOFF.pause(retry).as_secs_f64())
            .collect();
        // Three quarters of the reply deadline, so that the refusal naming what held the
        // append up arrives before the caller stops listening.
        let wait_limit = inner
            .reply_timeout
            .map_or(WAIT_WITHOUT_DEADLINE, |deadline| deadline * 3 / 4);
        sqlx::query(inner.sql.append_if.clone())
            .bind(stream.as_str())
            .bind(expected)
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
            .bind(&self.query.items)
            .bind(self.query.any_tags.as_deref())
            .bind(Xid8(self.after_parts.0))
            .bind(self.after_parts.1)
            .bind(pauses)
            .bind(wait_limit.as_secs_f64())
            .fetch_all(&mut *connection)
            .await
    }

    /// Before the COMMIT of a conditional append that ran inline projections on its
    /// transaction: whether the transaction inserted exactly the batch's `events`.
    /// `Ok(Err(..))` says why not. The append announced its batch's tags (migration 0008),
    /// so that younger conditional appends on other tags do not wait for it; an event an
    /// inline projection inserted besides would not be covered by that announcement, and
    /// a younger append could miss it.
    pub(super) async fn only_the_batch(
        inner: &Inner,
        connection: &mut PgConnection,
        events: usize,
    ) -> Result<Result<(), StoreError>, sqlx::Error> {
        let inserted: i64 = sqlx::query_scalar(inner.sql.own_events.clone())
            .fetch_one(&mut *connection)
            .await?;
        if usize::try_from(inserted).is_ok_and(|inserted| inserted == events) {
            return Ok(Ok(()));
        }
        Ok(Err(StoreError::new(
            "inline projection",
            format!(
                "the conditional append's transaction inserted {inserted} events for a batch \
                 of {events}: an inline projection must not append events (a conditional \
                 append on the other events' tags could miss them); nothing was stored"
            ),
        )))
    }

    /// The error for a refusal of the statement that is this condition's failure.
    fn failed(&self, stream: &StreamId, error: &sqlx::Error) -> AppendError {
        #[derive(serde::Deserialize)]
        struct First {
            transaction_id: String,
            position: i64,
            event_type: String,
        }
        let first = detail(error)
            .and_then(|detail| serde_json::from_str::<First>(detail).ok())
            .and_then(|first| {
                let transaction = first.transaction_id.parse::<u64>().ok()?;
                let sequence = u64::try_from(first.position).ok()?;
                Some((
                    Position::from_parts(transaction, sequence),
                    first.event_type,
                ))
            });
        match first {
            Some((position, event_type)) => AppendError::ConditionFailed {
                stream: stream.clone(),
                query: self.text.clone(),
                after: self.after,
                position,
                event_type,
            },
            None => AppendError::Store {
                stream: stream.clone(),
                source: StoreError::new(
                    "conditional append",
                    "the server refused the condition without naming the event".to_owned(),
                ),
            },
        }
    }
}

impl PgEventStore {
    /// Appends `events` on `condition`, in the span of an append.
    pub(super) async fn append_conditionally<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
        condition: &AppendCondition,
    ) -> Result<Committed<E>, AppendError> {
        let Some(check) = Check::new(condition) else {
            // A query that selects nothing never fails: an ordinary append.
            return self.append_batch(stream, expected, events).await;
        };
        let span = tracing::debug_span!(
            es_core::telemetry::APPEND_SPAN,
            %stream,
            events = events.len(),
            %expected,
            condition = %check.text,
        );
        self.conditional_in_span(stream, expected, events, &check)
            .instrument(span)
            .await
    }

    async fn conditional_in_span<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent<E>>,
        check: &Check,
    ) -> Result<Committed<E>, AppendError> {
        if events.is_empty() {
            // Nothing is written, so nothing is ordered: what an empty append checks, then
            // the condition alone (the order every store reports failures in).
            self.refuse_if_archived(stream).await?;
            let current = self.current_version(stream).await?;
            if !expected.matches(current) {
                return Err(AppendError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual: current,
                });
            }
            self.check_only(stream, check).await?;
            return Ok(Committed {
                stream_id: stream.clone(),
                version: current,
                events: Vec::new(),
                duplicate: false,
            });
        }
        let batch = Batch::encode(stream, &mut events)?;
        match self.refuse_overflow(stream, expected, events.len()).await {
            Ok(()) => {}
            // A stream too full for the batch ranks after the condition, as in the memory
            // store; an archive or a version mismatch before it.
            Err(full @ AppendError::StreamFull { .. }) => {
                self.check_only(stream, check).await?;
                return Err(full);
            }
            Err(refused) => return Err(refused),
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let in_transaction = !self.inline_for(stream, &batch).is_empty()
                || self
                    .inner
                    .conditional_in_transaction
                    .load(Ordering::Relaxed);
            let outcome = if in_transaction {
                match self
                    .insert_with_inline(stream, expected, &batch, &events, Some(check))
                    .await
                {
                    Ok(rows) => Ok(rows),
                    Err(Inserted::Sql(error)) => Err(error),
                    Err(Inserted::Projection(error)) => return Err(error),
                }
            } else {
                let batch = &batch;
                statement!(self.inner, |c| check.append_on(
                    &self.inner,
                    c,
                    stream,
                    expected,
                    batch
                ))
                .await
            };
            let error = match outcome {
                Ok(rows) if rows.len() == events.len() => {
                    self.inner.wakeups.appended();
                    return committed(stream, events, &rows);
                }
                // Refused by the guard: the stream is short of the expected version, or
                // archived.
                Ok(rows) if rows.is_empty() => {
                    return self
                        .classify_conditional(stream, expected, &batch, &events, check)
                        .await;
                }
                Ok(rows) => {
                    return Err(AppendError::Store {
                        stream: stream.clone(),
                        source: StoreError::new(
                            "conditional append",
                            format!("inserted {} rows for {} events", rows.len(), events.len()),
                        )
                        .with_context(format!("stream `{stream}`")),
                    });
                }
                Err(error) => error,
            };
            match conditional_refusal(&error) {
                Some(ConditionalRefusal::ConditionFailed) => {
                    return Err(check.failed(stream, &error));
                }
                Some(ConditionalRefusal::NotReadCommitted) if !in_transaction => {
                    // The sessions default to another isolation level: from now on, in a
                    // transaction begun at READ COMMITTED (nothing was written).
                    self.inner
                        .conditional_in_transaction
                        .store(true, Ordering::Relaxed);
                    attempts -= 1;
                    continue;
                }
                Some(ConditionalRefusal::GaveWay) if attempts < RETRIES => {
                    tokio::time::sleep(RETRY_BACKOFF.pause(attempts)).await;
                    continue;
                }
                Some(ConditionalRefusal::HeldBack) => {
                    let holder = detail(&error).unwrap_or("an older transaction");
                    // The announcement's own wait (migration 0008) names a younger check.
                    let why = match holder.strip_prefix(ANNOUNCEMENT_HELD) {
                        Some(checker) => format!(
                            "{checker} holds the lock of a tag this batch carries until its transaction ends, and the append announces its tags under that lock before inserting (nothing was stored; end that transaction, or try again)"
                        ),
                        None => format!(
                            "{holder} is still open, older than this append: an event it commits would sort before this append's, so the condition cannot be decided until it ends (nothing was stored; end that transaction, or try again)"
                        ),
                    };
                    return Err(AppendError::Store {
                        stream: stream.clone(),
                        source: StoreError::new("conditional append", why)
                            .with_kind(StoreErrorKind::Timeout)
                            .with_context(format!("stream `{stream}`")),
                    });
                }
                _ if is_write_race(&error) => {
                    match self
                        .classify_conditional(stream, expected, &batch, &events, check)
                        .await
                    {
                        Ok(repeat) => return Ok(repeat),
                        // As for `append`: `Any` promises no conflict, and each retry sees the
                        // other writer's commit.
                        Err(AppendError::Conflict { .. })
                            if expected == ExpectedVersion::Any && attempts < RETRIES =>
                        {
                            tokio::time::sleep(RETRY_BACKOFF.pause(attempts)).await;
                        }
                        Err(error) => return Err(error),
                    }
                }
                _ => {
                    return Err(AppendError::Store {
                        stream: stream.clone(),
                        source: store_error("conditional append", error)
                            .with_context(format!("stream `{stream}`")),
                    });
                }
            }
        }
    }

    /// Explains a refused conditional append, in the order every store reports failures
    /// in: an exact repeat succeeds (its condition is not checked: its own events would
    /// fail it), then the archive, the version, and the condition.
    async fn classify_conditional<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
        events: &[NewEvent<E>],
        check: &Check,
    ) -> Result<Committed<E>, AppendError> {
        if let Some(repeat) = self.find_stored(stream, batch, events).await? {
            return Ok(repeat);
        }
        self.refuse_if_archived(stream).await?;
        let actual = self.current_version(stream).await?;
        if !expected.matches(actual) {
            return Err(AppendError::Conflict {
                stream: stream.clone(),
                expected,
                actual,
            });
        }
        // Refused though archive and version allow it now: the stream moved on under an
        // `Any` append (which the caller tries again), or the condition fails.
        self.check_only(stream, check).await?;
        Err(AppendError::Conflict {
            stream: stream.clone(),
            expected,
            actual,
        })
    }

    /// Checks the condition alone (for a batch that writes nothing).
    async fn check_only(&self, stream: &StreamId, check: &Check) -> Result<(), AppendError> {
        let nothing = Batch::empty();
        let nothing = &nothing;
        let checked = statement!(self.inner, |c| check.append_on(
            &self.inner,
            c,
            stream,
            ExpectedVersion::Any,
            nothing
        ))
        .await;
        match checked {
            Ok(_) => Ok(()),
            Err(error)
                if conditional_refusal(&error) == Some(ConditionalRefusal::ConditionFailed) =>
            {
                Err(check.failed(stream, &error))
            }
            Err(error) => Err(AppendError::Store {
                stream: stream.clone(),
                source: store_error("condition check", error)
                    .with_context(format!("stream `{stream}`")),
            }),
        }
    }
}
