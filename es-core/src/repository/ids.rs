//! What a [`Repository`](super::Repository) and a [`Decider`](crate::Decider) share about
//! the events one execution appends: their ids, derived from the command id, and the
//! search for what an earlier execution under those ids recorded.

use futures_util::StreamExt as _;

use crate::command::CommandContext;
use crate::error::ReadError;
use crate::event::{DomainEvent, EventEnvelope};
use crate::store::EventStore;
use crate::stream::{StreamId, Version};
use uuid::Uuid;

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

    /// The id of the `index`th event of a decision: the one [`CommandContext::event_id`]
    /// promises for [`EventIds::command_id`], even when that id was drawn for this
    /// execution, since an error names it for the caller to run the command again under.
    pub(crate) fn get(&self, index: usize) -> uuid::Uuid {
        promised_event_id(self.command_id, self.stream, index)
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

/// The id [`CommandContext::event_id`] gives the `index`th event on `stream` of command
/// `command_id`: a UUID v5 of `"{stream}\0{index}"` in the command id's namespace, given
/// the command id's 48-bit time and made a v7. Its name is written on the stack, not
/// formatted into a new string; a test holds it to the public derivation.
fn promised_event_id(command_id: Uuid, stream: &StreamId, index: usize) -> Uuid {
    // The longest stream id, its separator and the 20 digits of the largest index.
    let mut name = [0_u8; StreamId::MAX_LEN + 1 + 20];
    // The index's digits, written by hand: formatting them cost a fifth as much as the
    // hash.
    let mut digits = [0_u8; 20];
    let mut start = digits.len();
    let mut rest = index;
    while start > 0 {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let digits = &digits[start..];
    let text = stream.as_str().as_bytes();
    let len = text.len() + 1 + digits.len();
    let Some(buffer) = name.get_mut(..len) else {
        // Not a valid stream id (never built), but the promise holds for it too.
        return crate::command::derive_event_id(command_id, stream, index);
    };
    // `buffer[text.len()]` stays 0: the separator.
    buffer[..text.len()].copy_from_slice(text);
    buffer[text.len() + 1..].copy_from_slice(digits);
    v7_from(
        command_id,
        *Uuid::new_v5(&command_id, &name[..len]).as_bytes(),
    )
}

/// A UUID v7 with `base`'s 48-bit timestamp and its other bits from `bytes`.
fn v7_from(base: Uuid, mut bytes: [u8; 16]) -> Uuid {
    bytes[..6].copy_from_slice(&base.as_bytes()[..6]);
    uuid::Builder::from_bytes(bytes)
        .with_version(uuid::Version::SortRand)
        .with_variant(uuid::Variant::RFC4122)
        .into_uuid()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids a repeat is recognised by are the ones the public derivation promises.
    #[test]
    fn ids_under_a_given_command_id_are_the_promised_ones() {
        let long = "x".repeat(StreamId::MAX_LEN - "account-".len());
        for id in ["1", "ünïcode", long.as_str()] {
            let stream = StreamId::new("account", id).unwrap();
            let context = CommandContext::new().with_command_id(Uuid::now_v7());
            let ids = EventIds::new(&context, &stream);
            for index in [0, 1, 9, 10, 12_345, usize::MAX] {
                assert_eq!(ids.get(index), context.event_id(&stream, index));
            }
        }
    }

    /// An execution's own ids are the promised ones for the id it drew (which its errors
    /// name), and differ between indexes and between executions of one context.
    #[test]
    fn ids_under_a_fresh_command_id_are_promised_and_distinct() {
        let stream = StreamId::new("account", "1").unwrap();
        let context = CommandContext::new();
        let first = EventIds::new(&context, &stream);
        let second = EventIds::new(&context, &stream);
        let mut seen = std::collections::HashSet::new();
        for ids in [&first, &second] {
            for index in 0..100 {
                let id = ids.get(index);
                let again = CommandContext::new().with_command_id(ids.command_id);
                assert_eq!(id, again.event_id(&stream, index));
                assert!(seen.insert(id), "{id} repeated");
            }
        }
        assert_ne!(first.command_id, second.command_id);
    }
}
