//! What a [`Repository`](super::Repository) and a [`Decider`](crate::Decider) share about
//! the events one execution appends: their ids, derived from the command id, and the
//! search for what an earlier execution under those ids recorded.

use futures_util::StreamExt as _;

use crate::command::CommandContext;
use crate::error::ReadError;
use crate::event::{DomainEvent, EventEnvelope};
use crate::store::EventStore;
use crate::stream::{StreamId, Version};

/// The ids of the events one execution appends, derived from its command id: the caller's,
/// so that a repeat of the command is recognised; or, when the caller gave none, one drawn
/// for this execution alone (a context may be cloned for many commands, which must not
/// look like repeats of each other). Every attempt of the execution appends under the
/// same ids, so the store recognises an append whose reply was lost; and a caller who runs
/// the command again under [`EventIds::command_id`] is recognised too.
pub(crate) struct EventIds<'a> {
    pub(crate) context: &'a CommandContext,
    stream: &'a StreamId,
    /// The id the event ids derive from: what spans and errors name.
    pub(crate) command_id: uuid::Uuid,
    /// An append of this execution failed without telling whether it was stored.
    pub(crate) uncertain: bool,
}

impl<'a> EventIds<'a> {
    pub(crate) fn new(context: &'a CommandContext, stream: &'a StreamId) -> Self {
        let command_id = if context.command_id_given() {
            context.command_id()
        } else {
            uuid::Uuid::now_v7()
        };
        Self {
            context,
            stream,
            command_id,
            uncertain: false,
        }
    }

    /// The id of the `index`th event of a decision.
    pub(crate) fn get(&self, index: usize) -> uuid::Uuid {
        crate::command::derive_event_id(self.command_id, self.stream, index)
    }

    /// Whether events may be stored under these ids already: by an earlier execution of
    /// the same command id, or by an attempt of this one.
    pub(crate) fn may_be_stored(&self) -> bool {
        self.context.command_id_given() || self.uncertain
    }

    /// Whether what is found stored under these ids is reported as a repeat: only with
    /// the caller's command id. With one of this execution alone, what was stored is this
    /// very execution, whose first reply was lost, not an earlier one.
    pub(crate) fn duplicate(&self) -> bool {
        self.context.command_id_given()
    }
}

/// What an earlier execution (or attempt) under some [`EventIds`] recorded.
pub(crate) struct FirstOutcome<E> {
    /// The version of its first event.
    pub(crate) first_version: Version,
    /// Its events, in order: every one stored under the ids, however many this
    /// execution decided.
    pub(crate) events: Vec<EventEnvelope<E>>,
}

/// The events an earlier execution under `ids` recorded on `stream`, if any: the event
/// stored under the first id, and those after it that carry the next ids.
pub(crate) async fn first_outcome<S: EventStore, E: DomainEvent>(
    store: &S,
    stream: &StreamId,
    ids: &EventIds<'_>,
) -> Result<Option<FirstOutcome<E>>, ReadError> {
    if !ids.may_be_stored() {
        return Ok(None);
    }
    let Some(first) = store.find_event::<E>(ids.get(0)).await? else {
        return Ok(None);
    };
    if &first.stream_id != stream {
        return Ok(None);
    }
    let mut events: Vec<EventEnvelope<E>> = Vec::new();
    let rest = store.read_stream::<E>(stream, first.version);
    futures_util::pin_mut!(rest);
    while let Some(envelope) = rest.next().await {
        let envelope = envelope?;
        if ids.get(events.len()) != envelope.event_id {
            break;
        }
        events.push(envelope);
    }
    Ok(Some(FirstOutcome {
        first_version: first.version,
        events,
    }))
}
