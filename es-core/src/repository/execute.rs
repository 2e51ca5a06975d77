//! Running a command: decide, append expecting the loaded version, and again after a
//! lost race or a moment's store failure, under event ids that make every attempt of one
//! execution recognisable to the store.

use std::time::Instant;

use crate::aggregate::Aggregate;
use crate::command::{CommandContext, CommandOutcome};
use crate::error::{AppendError, CommandError};
use crate::event::{EventEnvelope, NewEvent};
use crate::store::{EventStore, SnapshotStore};
use crate::stream::{ExpectedVersion, StreamId};
use crate::telemetry;

use super::ids::{EventIds, first_outcome};
use super::{Loaded, Repository};

/// One execution of a command: its event ids, and for the span and the metrics the times
/// it was decided again (after a conflict or a store failure) and the appends that lost a
/// race.
struct Execution<'a> {
    ids: EventIds<'a>,
    retries: u32,
    conflicts: u32,
}

impl<A, S> Repository<A, S>
where
    A: Aggregate,
    S: EventStore + SnapshotStore,
{
    /// Runs the command, and again, from a fresh load, while the store fails for a moment
    /// (unavailable, timing out), up to the policy's store retries. An append that failed
    /// so may have been stored: the retry appends under the same event ids, so the store
    /// recognises it, and a decision that now differs is checked against what was stored.
    ///
    /// Runs in the command's span ([`telemetry::command_span`]), where it records the
    /// outcome, as it does in the command metrics.
    pub(super) async fn run_riding_out(
        &self,
        stream: StreamId,
        command: A::Command,
        context: CommandContext,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        let started = Instant::now();
        let mut execution = Execution {
            ids: EventIds::new(&context, &stream),
            retries: 0,
            conflicts: 0,
        };
        let mut failures = 0;
        // One loop in this function rather than a function of its own: each level of
        // future moves the command's whole state once more.
        let result = loop {
            match self.run(&stream, command.clone(), &mut execution).await {
                Err(error) if error.is_transient() && failures < self.retry.store_retries() => {
                    execution.ids.uncertain |= matches!(error, CommandError::Append { .. });
                    failures += 1;
                    execution.retries += 1;
                    let pause = self.retry.store_backoff().pause(failures);
                    tracing::debug!(
                        error = &error as &dyn std::error::Error,
                        ?pause,
                        "store failed for a moment; running the command again"
                    );
                    futures_timer::Delay::new(pause).await;
                }
                outcome => break outcome,
            }
        };
        let outcome = telemetry::command_outcome(&result);
        telemetry::command_done::<A>(started, outcome, execution.retries, execution.conflicts);
        result
    }

    async fn run(
        &self,
        stream: &StreamId,
        command: A::Command,
        execution: &mut Execution<'_>,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        let context = execution.ids.context;
        let stream = stream.clone();
        let load_error = |source| CommandError::Load {
            stream: stream.clone(),
            source,
        };
        let mut attempt = 0;
        // The state to catch up and decide on again after a lost race.
        let mut previous: Option<Loaded<A>> = None;
        loop {
            // A cached state is used as is: if other writers moved the stream on, the append
            // below conflicts and the retry catches up. So the usual command costs one
            // round trip to the store, not two.
            // `archived`: whether the stream was archived when this state was read, where
            // the read said so (a load or a catch-up does; a cached state does not).
            let (loaded, fresh, archived) = match previous.take() {
                Some(stale) => {
                    let (loaded, archived) = self
                        .catch_up_current(&stream, stale.state, stale.version)
                        .await
                        .map_err(load_error)?;
                    (loaded, true, Some(archived))
                }
                None => match self.cache.as_ref().and_then(|cache| cache.take(&stream)) {
                    Some((state, version)) => (
                        Loaded {
                            stream_id: stream.clone(),
                            version,
                            state,
                        },
                        false,
                        None,
                    ),
                    // The archive state waits for the append (or for a rejection): a
                    // repeat of a command executed before the archive gets its outcome.
                    None => match self.load_current(&stream, false).await {
                        Ok(Some((loaded, archived))) => (loaded, true, Some(archived)),
                        // (Not met: this load does not refuse archived streams.)
                        Ok(None) => return Err(CommandError::Archived { stream }),
                        Err(source) => return Err(load_error(source)),
                    },
                },
            };
            let decision = loaded.state.handle(command.clone(), &self.services).await;
            let events = match decision {
                Ok(events) if !events.is_empty() => events,
                // A rejection or a no-op must come from the current state, never a cached
                // one that other writers have moved past: catch up and decide again.
                _ if !fresh => {
                    previous = Some(loaded);
                    continue;
                }
                // A repeated command may be rejected or be a no-op now *because* its first
                // execution went through, so look for that first.
                Ok(_) => {
                    let version = loaded.version;
                    self.keep(loaded);
                    return match self.first_outcome(&stream, &execution.ids).await? {
                        Some(outcome) => Ok(outcome),
                        None if self.archived(&stream, archived).await? => {
                            Err(CommandError::Archived { stream })
                        }
                        None => Ok(CommandOutcome {
                            stream_id: stream,
                            version,
                            events: Vec::new(),
                            duplicate: false,
                        }),
                    };
                }
                Err(error) => {
                    self.keep(loaded);
                    return match self.first_outcome(&stream, &execution.ids).await? {
                        Some(outcome) => Ok(outcome),
                        None if self.archived(&stream, archived).await? => {
                            Err(CommandError::Archived { stream })
                        }
                        None => Err(CommandError::Rejected { stream, error }),
                    };
                }
            };

            // Only decisions on the current state count: a cached state that was merely
            // behind is caught up for free.
            if fresh {
                attempt += 1;
            }
            let mut metadata = context.event_metadata();
            if metadata.traceparent.is_none() {
                // The command's span (feature `opentelemetry`): its events continue the
                // trace.
                metadata.traceparent = telemetry::current_traceparent();
            }
            let new_events = events
                .into_iter()
                .enumerate()
                .map(|(index, event)| {
                    // Built whole: `NewEvent::new` would draw a UUID v7 and empty
                    // metadata only for both to be replaced.
                    NewEvent {
                        event_id: execution.ids.get(index),
                        metadata: metadata.clone(),
                        event,
                    }
                })
                .collect();
            let expected = ExpectedVersion::Exact(loaded.version);
            match self.store.append(&stream, expected, new_events).await {
                Ok(committed) if committed.duplicate => {
                    tracing::debug!("command already executed");
                    self.keep(loaded);
                    return Ok(self
                        .first_outcome(&stream, &execution.ids)
                        .await?
                        .unwrap_or(CommandOutcome {
                            duplicate: context.command_id_given(),
                            ..committed
                        }));
                }
                Ok(committed) => {
                    tracing::debug!(version = %committed.version, events = committed.events.len(), "command committed");
                    self.after_commit(loaded, &committed.events).await;
                    return Ok(committed);
                }
                Err(AppendError::Conflict {
                    expected, actual, ..
                }) => {
                    execution.conflicts += 1;
                    if fresh && attempt >= self.retry.max_attempts() {
                        self.keep(loaded);
                        return Err(CommandError::Conflict {
                            stream,
                            attempts: attempt,
                            expected,
                            actual,
                        });
                    }
                    tracing::debug!(attempt, %actual, "concurrency conflict, retrying");
                    execution.retries += 1;
                    if fresh {
                        self.back_off(attempt).await;
                    }
                    previous = Some(loaded);
                }
                // Some ids of this decision are stored already: the first execution of this
                // command emitted more events than this one did.
                Err(source @ AppendError::DuplicateEventId { .. }) => {
                    return match self.first_outcome(&stream, &execution.ids).await? {
                        Some(outcome) => Ok(outcome),
                        None => Err(CommandError::Append {
                            stream,
                            command_id: execution.ids.command_id,
                            source,
                        }),
                    };
                }
                Err(AppendError::Archived { .. }) => {
                    return Err(CommandError::Archived { stream });
                }
                Err(source) => {
                    return Err(CommandError::Append {
                        stream,
                        command_id: execution.ids.command_id,
                        source,
                    });
                }
            }
        }
    }

    /// Whether `stream` is archived, needed only where no append has answered it: before a
    /// rejection or a no-op is returned, so that every command on an archived stream fails
    /// alike. What the state's own load said (`known`) answers it without another round
    /// trip: the decision was made on the stream as that load saw it, so an archive that
    /// came after the load is after the decision too. Otherwise the store is asked.
    async fn archived(
        &self,
        stream: &StreamId,
        known: Option<bool>,
    ) -> Result<bool, CommandError<A::Error>> {
        if let Some(archived) = known {
            return Ok(archived);
        }
        self.store
            .is_archived(stream)
            .await
            .map_err(|source| CommandError::Load {
                stream: stream.clone(),
                source,
            })
    }

    /// Puts a state that is right as of its version back into the cache.
    fn keep(&self, loaded: Loaded<A>) {
        if let Some(cache) = &self.cache {
            cache.put(&loaded.stream_id, (loaded.state, loaded.version));
        }
    }

    /// Evolves the state by the committed events, once, when the cache or a due snapshot
    /// needs it.
    async fn after_commit(&self, loaded: Loaded<A>, committed: &[EventEnvelope<A::Event>]) {
        let Some(last) = committed.last() else {
            return;
        };
        let snapshot_due = self.snapshots.is_due(loaded.version, last.version);
        if !snapshot_due && self.cache.is_none() {
            return;
        }
        let mut state = loaded.state;
        for envelope in committed {
            state.apply(&envelope.event);
        }
        if snapshot_due {
            self.save_snapshot(&state, last).await;
        }
        self.keep(Loaded {
            stream_id: loaded.stream_id,
            version: last.version,
            state,
        });
    }

    /// The events a previous execution of this command (or an attempt of this one whose
    /// append may have been stored) recorded on `stream`, if any.
    async fn first_outcome(
        &self,
        stream: &StreamId,
        ids: &EventIds<'_>,
    ) -> Result<Option<CommandOutcome<A::Event>>, CommandError<A::Error>> {
        let found = first_outcome::<_, A::Event>(&self.store, stream, ids)
            .await
            .map_err(|source| CommandError::Load {
                stream: stream.clone(),
                source,
            })?;
        Ok(found.map(|found| CommandOutcome {
            stream_id: stream.clone(),
            version: found
                .events
                .last()
                .map_or(found.first_version, |e| e.version),
            events: found.events,
            duplicate: ids.duplicate(),
        }))
    }

    async fn back_off(&self, failed_attempts: u32) {
        let delay = self.retry.backoff(failed_attempts);
        if !delay.is_zero() {
            // A timer of its own, so that command execution works on any runtime (or on a
            // Tokio runtime built without its time driver).
            futures_timer::Delay::new(delay).await;
        }
    }
}
