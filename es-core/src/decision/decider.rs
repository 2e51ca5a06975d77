//! [`Decider`]: reads what a decision depends on with one query, lets it decide, and
//! appends on the condition that nothing it read changed, again after a lost race.

use std::fmt;
use std::sync::Arc;

use futures_util::StreamExt as _;
use tracing::Instrument as _;

use crate::command::CommandContext;
use crate::error::AppendError;
use crate::event::{NewEvent, RawEvent};
use crate::metadata::Metadata;
use crate::query::{AppendCondition, Query};
use crate::repository::RetryPolicy;
use crate::repository::ids::{EventIds, first_outcome};
use crate::store::EventStore;
use crate::stream::{ExpectedVersion, Position, StreamId};
use crate::telemetry::{self, Outcome};

use super::cache::{DecisionCache, Slot};
use super::states::DecisionStates;
use super::states::sealed::Fold as _;
use super::{Decided, Decision, DecisionError};

/// How many times a rejection (or a decision to do nothing) is checked and made again
/// because its read had missed an event.
const CONFIRMATIONS: u32 = 3;

/// Executes [`Decision`]s on store `S`.
///
/// Executing a decision:
///
/// 1. makes its states ([`Decision::state`]) and reads every event their queries select,
///    with one query (their union), from the start of the log, folding each event into
///    the states whose own query selects it;
/// 2. lets it decide ([`Decision::decide`]) on the folded states;
/// 3. appends the events to [`Decision::stream`] on the condition that no event the
///    query selects was stored after the last one read
///    ([`EventStore::append_if`], with [`ExpectedVersion::Any`]);
/// 4. if the condition failed (another decision on the same entities got there first),
///    reads the events stored since into the same states and decides again, after a
///    jittered pause, up to the [`RetryPolicy`]'s attempts; and rides out a store's
///    passing failures as the policy says.
///
/// With [`Decider::with_unread_first_attempt`], step 1 is skipped on the first attempt:
/// it decides on the states as made, and appends on the condition that nothing the query
/// selects is stored at all (one round trip for a decision on something new), reading
/// only when that is refused. With [`Decider::with_cache`], a decision on states the
/// decider folded before starts from them instead, and appends on the condition that
/// nothing the query selects was stored since (one round trip while no other writer
/// touches those entities), reading only what was stored since when that is refused.
///
/// A rejection, or a decision to emit nothing, is first checked against the same
/// condition with nothing to append (a conditional append of no events: on PostgreSQL a
/// few round trips): a store may hold its log's end back (PostgreSQL does, behind
/// transactions still open), so a read can miss an event committed just before it, even
/// the caller's own. If the check finds one, the decision waits, within the policy's store
/// retries, until the store delivers it, then reads and decides again, at most three
/// times; a check that cannot run (the store failing) leaves the decision as decided.
///
/// A decision that emits nothing appends nothing and succeeds. Its events carry the
/// metadata of the [`CommandContext`] it runs in, with the decision's own tags
/// ([`Decision::tags`]) added to the context's; with a command id the caller gave, a
/// decision executed twice records once (see [`Decider::execute_with`]).
///
/// Each execution runs in a `tracing` span named `es.decision`, with the fields `stream`,
/// `command_id` and `query`, and when done `outcome` (one of
/// [`telemetry::OUTCOMES`]) and `retries`.
///
/// See the [module docs](crate::decision) for an example.
#[derive(Clone)]
pub struct Decider<S> {
    store: S,
    retry: RetryPolicy,
    unread_first: bool,
    cache: Option<Arc<DecisionCache>>,
}

impl<S: fmt::Debug> fmt::Debug for Decider<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decider")
            .field("store", &self.store)
            .field("retry", &self.retry)
            .field("unread_first", &self.unread_first)
            .field("cached", &self.cache.is_some())
            .finish()
    }
}

impl<S: EventStore> Decider<S> {
    /// A decider on `store`, with the [default](RetryPolicy::default) retry policy.
    pub fn new(store: S) -> Self {
        Self {
            store,
            retry: RetryPolicy::default(),
            unread_first: false,
            cache: None,
        }
    }

    /// With `true`, a decision's first attempt reads nothing: it decides on the states as
    /// [`Decision::state`] makes them, and appends on the condition that the store holds
    /// no event the query selects at all. For decisions on what is usually new (a
    /// username claimed, a first subscription to a course that was just opened), that
    /// makes a decision one round trip to the store instead of two. When the store holds
    /// such an event, the append is refused, and the decision reads and decides as it
    /// would without this setting (after the store delivers the event that refused it; not
    /// counted in [`Decided::attempts`], counted in the span's `retries`). A first attempt
    /// that rejects, or decides nothing, appends nothing and is not believed: it was made
    /// on nothing read, so the decision reads and decides again. The guarantees are the
    /// same either way: what is appended was decided on every event the query selects.
    ///
    /// Off by default: for decisions on entities that usually have events already, a
    /// refused append costs more than a read (on PostgreSQL, `es_append_if` inserts the
    /// rows, tag index entries included, before its check refuses and rolls them back).
    #[must_use]
    pub fn with_unread_first_attempt(mut self, unread_first: bool) -> Self {
        self.unread_first = unread_first;
        self
    }

    /// Keeps the states of up to `capacity` decisions (0, the default, keeps none), so that
    /// the next decision on the same states decides on them at once: one round trip to the
    /// store (its conditional append) instead of two. Clones of the decider share the
    /// cache.
    ///
    /// A decision's states are kept after it commits (with the events it recorded folded
    /// in), is rejected or decides nothing, found again by their type and their queries
    /// (state by state), and taken out while a decision uses them (two decisions on the
    /// same states at once: the second reads from the store). A decision on kept states
    /// appends on the condition that the query selects nothing stored after the position
    /// they include; when anything else stored such an event (another process, a decider
    /// without this cache, this decider's decisions on other states whose events these
    /// select), the append is refused, and the decision reads what was stored since, into
    /// the same states, and decides again (counted in the span's `retries`, not in
    /// [`Decided::attempts`]). A rejection on kept states is read and checked as any other.
    /// So what is appended was decided on every event the query selects, as without the
    /// cache.
    ///
    /// **The contract that makes sharing safe:** states of one type made for the same
    /// queries start out the same ([`Decision::state`] puts in them only what their
    /// queries are made from, such as the entities' tags). Nothing can check it. A state
    /// that also holds a setting of the decision (a capacity passed with the command,
    /// say) would be found, with the setting of the decision that folded it, by a
    /// decision with another: keep such settings in the decision, where
    /// [`Decision::decide`] reads them, or leave the cache off.
    #[must_use]
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.cache = (capacity > 0).then(|| Arc::new(DecisionCache::new(capacity)));
        self
    }

    /// Sets how often a decision is read, decided and appended again after its condition
    /// failed (the policy's attempts and backoff), and after the store failed for a
    /// moment (its store retries).
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Executes `decision` with a fresh command id and no metadata.
    ///
    /// # Errors
    ///
    /// See [`Decider::execute_with`].
    pub async fn execute<D: Decision>(
        &self,
        decision: &D,
    ) -> Result<Decided<D::Event>, DecisionError<D::Error>> {
        self.execute_with(decision, CommandContext::new()).await
    }

    /// Executes `decision` in `context`: its events carry the context's metadata
    /// (correlation, causation, actor, trace context), and their ids derive from its
    /// command id.
    ///
    /// If the context's command id (one the caller gave) was executed before and recorded
    /// events, nothing is appended and those events are returned with
    /// [`Decided::duplicate`] set, even when the decision, decided again, would now be
    /// rejected because of them (the course it filled is full). A first execution that
    /// was rejected or emitted nothing leaves no trace, so a repeat of it is decided
    /// afresh.
    ///
    /// # Errors
    ///
    /// [`DecisionError::Rejected`] when the rule says no, [`DecisionError::Conflict`] when
    /// every attempt's condition failed, [`DecisionError::Undecodable`] when a state
    /// selects an event it cannot decode, and [`DecisionError::Read`] or
    /// [`DecisionError::Append`] when the store fails (after the retries the policy
    /// allows for passing failures).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the decision's events appended or not, never some of
    /// them (an append is atomic). Executing it again with the same command id tells
    /// which, and records it once.
    pub async fn execute_with<D: Decision>(
        &self,
        decision: &D,
        context: CommandContext,
    ) -> Result<Decided<D::Event>, DecisionError<D::Error>> {
        let stream = decision.stream();
        let states = decision.state();
        let queries = states.queries();
        let query = union(&queries);
        // Drawn here, when the caller gave none, so that the span names the id the event
        // ids derive from.
        let ids = EventIds::new(&context, &stream);
        let span = tracing::info_span!(
            crate::telemetry::DECISION_SPAN,
            %stream,
            command_id = %ids.command_id,
            %query,
            outcome = tracing::field::Empty,
            retries = tracing::field::Empty,
        );
        self.run(decision, states, &queries, &query, &stream, ids)
            .instrument(span)
            .await
    }

    /// Reads, decides and appends until the decision is recorded, rejected or out of
    /// attempts, and records the outcome in the current span.
    async fn run<D: Decision>(
        &self,
        decision: &D,
        first_states: D::State,
        queries: &[Query],
        query: &Query,
        stream: &StreamId,
        mut ids: EventIds<'_>,
    ) -> Result<Decided<D::Event>, DecisionError<D::Error>> {
        // The same for every attempt: the context's metadata, the decision's own tags
        // (the store adds those each event declares), and the trace of this span.
        let mut metadata = ids.context.event_metadata();
        metadata.tags.extend(decision.tags());
        if metadata.traceparent.is_none() {
            metadata.traceparent = telemetry::current_traceparent();
        }
        // The states as folded so far, and the position they were folded up to: after a
        // lost race, only the events stored since are read (the log only grows, and a
        // position read_query delivered is one nothing can commit before any more).
        // Where the states are kept between decisions (`with_cache`), and those kept.
        let slot = Slot::new::<D::State>(self.cache.as_deref(), queries);
        let kept = slot.take::<D::State>();
        // Whether this attempt decides without reading: on the states kept, or on the
        // first states (`with_unread_first_attempt`).
        let mut unread = kept.is_some() || self.unread_first;
        let mut folded = Some(kept.unwrap_or((first_states, None)));
        let mut attempts = 0_u32;
        let mut confirmations = 0_u32;
        let mut failures = 0_u32;
        let mut retries = 0_u32;
        // One loop in this function rather than a function per attempt: each level of
        // future would move the decision's whole state once more.
        let result = loop {
            let (mut current, from) = folded.take().unwrap_or_else(|| (decision.state(), None));
            if unread {
                match decision.decide(&current) {
                    Ok(events) if !events.is_empty() => {
                        let condition = AppendCondition::new(query.clone()).after(from);
                        let new_events = stamped(events, &ids, &metadata);
                        match self
                            .store
                            .append_if(stream, ExpectedVersion::Any, new_events, condition)
                            .await
                        {
                            Ok(committed) if !committed.duplicate => {
                                tracing::debug!(
                                    events = committed.events.len(),
                                    "decision committed without a read"
                                );
                                slot.keep_committed(current, from, &committed.events);
                                break Ok(Decided {
                                    stream_id: committed.stream_id,
                                    events: committed.events,
                                    duplicate: false,
                                    after: from,
                                    attempts: 1,
                                });
                            }
                            // The query selects events stored (since the states kept):
                            // read them, once the store delivers the first.
                            Err(AppendError::ConditionFailed { position, .. }) => {
                                tracing::debug!(%position, "unread decision refused; reading");
                                retries += 1;
                                self.until_readable(position).await;
                            }
                            // A passing failure, which may have left the events stored:
                            // ridden out as the policy says, and the usual attempt's
                            // append, under the same ids, then finds them ours.
                            Err(source) if source.is_transient() => {
                                ids.uncertain = true;
                                let error = DecisionError::<D::Error>::Append {
                                    stream: stream.clone(),
                                    command_id: ids.command_id,
                                    source,
                                };
                                if failures >= self.retry.store_retries() {
                                    break Err(error);
                                }
                                failures += 1;
                                retries += 1;
                                self.pause_after_failure(&error, failures).await;
                            }
                            // A store's own failure may also follow a stored append.
                            Err(AppendError::Store { .. }) => ids.uncertain = true,
                            // Anything else (a duplicate, a refusal) is met again by the
                            // usual attempt, after its read.
                            Ok(_) | Err(_) => {}
                        }
                    }
                    // Rejected, or nothing to do, on nothing read: read and decide.
                    Ok(_) | Err(_) => {}
                }
                unread = false;
                folded = Some((current, from));
                continue;
            }
            let after = match self.read(&mut current, queries, query, from, stream).await {
                Ok(last) => last.or(from),
                // The states may be half folded: start again from nothing.
                Err(error) if error.is_transient() && failures < self.retry.store_retries() => {
                    failures += 1;
                    retries += 1;
                    self.pause_after_failure(&error, failures).await;
                    continue;
                }
                Err(error) => break Err(error),
            };
            attempts += 1;
            let decided = decision.decide(&current);
            if !matches!(&decided, Ok(events) if !events.is_empty()) {
                // A rejection, or nothing to do. A repeat may be rejected *because* its
                // first execution went through: look for that first.
                match self.first_outcome(stream, &ids, attempts, after).await {
                    Ok(Some(decided)) => break Ok(decided),
                    Ok(None) => {}
                    Err(error) => break Err(error),
                }
                // Then make sure the read saw everything: a store may hold the end of its
                // log back (PostgreSQL, behind transactions still open), so a read can
                // miss an event committed just before it, the caller's own included, and
                // a rejection would rest on it. The check is the condition an append would
                // have had, with nothing to append; if an event matches, decide again.
                // At most CONFIRMATIONS rounds, each after a pause: under steady writes
                // to what the query selects the decision is given as decided, on a read
                // that was complete when it was made.
                if confirmations < CONFIRMATIONS
                    && attempts < self.retry.max_attempts()
                    && let Some(position) = self.confirm::<D::Event>(stream, query, after).await
                {
                    tracing::debug!(attempts, %position, "decision read was not complete");
                    confirmations += 1;
                    retries += 1;
                    // Read again once the store delivers the event the read missed.
                    self.until_readable(position).await;
                    let pause = self.retry.backoff(confirmations);
                    if !pause.is_zero() {
                        futures_timer::Delay::new(pause).await;
                    }
                    folded = Some((current, after));
                    continue;
                }
            }
            let events = match decided {
                Ok(events) if events.is_empty() => {
                    slot.keep(current, after);
                    break Ok(Decided {
                        stream_id: stream.clone(),
                        events: Vec::new(),
                        duplicate: false,
                        after,
                        attempts,
                    });
                }
                Ok(events) => events,
                Err(error) => {
                    slot.keep(current, after);
                    break Err(DecisionError::Rejected {
                        stream: stream.clone(),
                        error,
                    });
                }
            };
            let new_events = stamped(events, &ids, &metadata);
            let condition = AppendCondition::new(query.clone()).after(after);
            let appended = self
                .store
                .append_if(stream, ExpectedVersion::Any, new_events, condition)
                .await;
            match appended {
                // Stored already under these ids: by an earlier execution of the
                // caller's command id, or by an attempt of this one whose reply was lost.
                // The store answers with the events of this batch it found, which are
                // fewer than were stored if this attempt decided fewer: return all.
                Ok(committed) if committed.duplicate => {
                    tracing::debug!("decision already recorded");
                    break match self
                        .first_outcome::<D::Event, D::Error>(stream, &ids, attempts, after)
                        .await
                    {
                        Ok(Some(decided)) => Ok(decided),
                        // The decision is recorded: a read of the rest failing for a moment
                        // must not turn that into a failure; what the store returned is
                        // what this attempt decided of it.
                        Ok(None) | Err(_) => Ok(Decided {
                            stream_id: committed.stream_id,
                            events: committed.events,
                            duplicate: ids.duplicate(),
                            after,
                            attempts,
                        }),
                    };
                }
                Ok(committed) => {
                    tracing::debug!(events = committed.events.len(), "decision committed");
                    slot.keep_committed(current, after, &committed.events);
                    break Ok(Decided {
                        stream_id: committed.stream_id,
                        events: committed.events,
                        duplicate: false,
                        after,
                        attempts,
                    });
                }
                Err(AppendError::ConditionFailed {
                    position,
                    event_type,
                    ..
                }) => {
                    if attempts >= self.retry.max_attempts() {
                        break Err(DecisionError::Conflict {
                            stream: stream.clone(),
                            query: query.to_string(),
                            attempts,
                            after,
                            position,
                            event_type,
                        });
                    }
                    tracing::debug!(attempts, %position, "decision condition failed, retrying");
                    retries += 1;
                    folded = Some((current, after));
                    let pause = self.retry.backoff(attempts);
                    if !pause.is_zero() {
                        // A timer of its own, so that decisions run on any runtime.
                        futures_timer::Delay::new(pause).await;
                    }
                }
                // Some ids of this execution are stored already: its first run emitted
                // more events than this one.
                Err(source @ AppendError::DuplicateEventId { .. }) => {
                    break match self.first_outcome(stream, &ids, attempts, after).await {
                        Ok(Some(decided)) => Ok(decided),
                        Ok(None) => Err(DecisionError::Append {
                            stream: stream.clone(),
                            command_id: ids.command_id,
                            source,
                        }),
                        Err(error) => Err(error),
                    };
                }
                Err(source) if source.is_transient() && failures < self.retry.store_retries() => {
                    ids.uncertain = true;
                    folded = Some((current, after));
                    failures += 1;
                    retries += 1;
                    let error = DecisionError::<D::Error>::Append {
                        stream: stream.clone(),
                        command_id: ids.command_id,
                        source,
                    };
                    self.pause_after_failure(&error, failures).await;
                }
                Err(source) => {
                    break Err(DecisionError::Append {
                        stream: stream.clone(),
                        command_id: ids.command_id,
                        source,
                    });
                }
            }
        };
        record_outcome(&result, retries);
        result
    }

    /// The position of an event `query` selects that was stored after `after` (beyond
    /// what the read delivered), if the store's check of an append condition, with
    /// nothing to append, finds one. A check that cannot run (the store failing, the
    /// stream archived) finds none: the decision then stands as decided, as it did before
    /// it was checked.
    async fn confirm<E: crate::DomainEvent>(
        &self,
        stream: &StreamId,
        query: &Query,
        after: Option<Position>,
    ) -> Option<Position> {
        let condition = AppendCondition::new(query.clone()).after(after);
        match self
            .store
            .append_if::<E>(stream, ExpectedVersion::Any, Vec::new(), condition)
            .await
        {
            Err(AppendError::ConditionFailed { position, .. }) => Some(position),
            Ok(_) | Err(_) => None,
        }
    }

    /// Waits until the store's log readers deliver `position` (it holds its log's end back
    /// behind transactions still open), within the retry policy's store retries; a store
    /// that cannot tell ends the wait.
    async fn until_readable(&self, position: Position) {
        for tries in 1..=self.retry.store_retries() {
            if !matches!(self.store.readable(position).await, Ok(false)) {
                return;
            }
            futures_timer::Delay::new(self.retry.store_backoff().pause(tries)).await;
        }
    }

    /// Reads the events `query` selects after `from` (from the start if `None`) into
    /// `states`; the position of the last one read, if any.
    async fn read<T: DecisionStates, E>(
        &self,
        states: &mut T,
        queries: &[Query],
        query: &Query,
        from: Option<Position>,
        stream: &StreamId,
    ) -> Result<Option<Position>, DecisionError<E>> {
        let from = from.unwrap_or(Position::START);
        let events = self.store.read_query::<RawEvent>(query, from);
        futures_util::pin_mut!(events);
        let mut last = None;
        while let Some(envelope) = events.next().await {
            let envelope = envelope.map_err(|source| DecisionError::Read {
                stream: stream.clone(),
                source,
            })?;
            states
                .fold(queries, &envelope)
                .map_err(DecisionError::undecodable)?;
            last = Some(envelope.position);
        }
        Ok(last)
    }

    async fn pause_after_failure<E>(&self, error: &DecisionError<E>, failures: u32)
    where
        DecisionError<E>: std::error::Error + 'static,
    {
        let pause = self.retry.store_backoff().pause(failures);
        tracing::debug!(
            error = error as &dyn std::error::Error,
            ?pause,
            "store failed for a moment; running the decision again"
        );
        futures_timer::Delay::new(pause).await;
    }

    /// The events an earlier execution under these ids recorded on `stream`, if any.
    async fn first_outcome<E: crate::DomainEvent, R>(
        &self,
        stream: &StreamId,
        ids: &EventIds<'_>,
        attempts: u32,
        after: Option<Position>,
    ) -> Result<Option<Decided<E>>, DecisionError<R>> {
        let found = first_outcome::<_, E>(&self.store, stream, ids)
            .await
            .map_err(|source| DecisionError::Read {
                stream: stream.clone(),
                source,
            })?;
        Ok(found.map(|found| Decided {
            stream_id: stream.clone(),
            events: found.events,
            duplicate: ids.duplicate(),
            after,
            attempts,
        }))
    }
}

/// The decided events as appended: ids derived from the execution's command id, and the
/// context's metadata.
fn stamped<E>(events: Vec<E>, ids: &EventIds<'_>, metadata: &Metadata) -> Vec<NewEvent<E>> {
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            // Built whole: `NewEvent::new` would draw a UUID v7 and empty metadata only
            // for both to be replaced.
            NewEvent {
                event_id: ids.get(index),
                metadata: metadata.clone(),
                event,
            }
        })
        .collect()
}

/// The union of `queries`.
fn union(queries: &[Query]) -> Query {
    queries.iter().cloned().fold(Query::none(), Query::or)
}

/// Records a finished decision's outcome and retries in the current span.
fn record_outcome<E, R>(result: &Result<Decided<E>, DecisionError<R>>, retries: u32) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    let outcome = match result {
        Ok(decided) => Outcome::Done {
            duplicate: decided.duplicate,
            unchanged: decided.events.is_empty(),
        },
        Err(DecisionError::Rejected { .. }) => Outcome::Rejected,
        Err(DecisionError::Conflict { .. }) => Outcome::Conflict,
        Err(_) => Outcome::Error,
    };
    span.record("outcome", outcome.name());
    span.record("retries", retries);
}
