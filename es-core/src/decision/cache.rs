//! The [`Decider`](super::Decider)'s cache of folded states
//! ([`Decider::with_cache`](super::Decider::with_cache)): the states a decision ended on,
//! with the position they include, kept by their type and query, so that the next
//! decision on the same entities appends at once instead of reading them again.
//!
//! Why a state put back after a commit includes everything up to the decision's own last
//! event: its append's condition held, so no other event the query selects was stored
//! between the read and that event, and the stores order their logs so that nothing can
//! be stored before that event any more (on PostgreSQL, the conditional append waited
//! for every older transaction that could write a selected event before it checked).
//! Whatever is stored later comes after that position, where the next decision's
//! condition finds it.

use std::any::{Any, TypeId};

use crate::cache::StateCache;
use crate::event::{DomainEvent, EventEnvelope, RawEvent};
use crate::query::Query;
use crate::stream::Position;

use super::states::DecisionStates;

/// Folded states by their type and their union query.
pub(super) struct DecisionCache {
    states: StateCache<Key, Entry>,
}

/// What a cached state is found by: states of one type, made for the same query, are
/// the same fold of the same events (the [`Decider::with_cache`](super::Decider::with_cache)
/// contract), whichever decision made them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    states: TypeId,
    query: Query,
}

struct Entry {
    states: Box<dyn Any + Send + Sync>,
    after: Option<Position>,
}

impl DecisionCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            states: StateCache::new(capacity),
        }
    }

    /// The key of states `T` made for `query`.
    pub(super) fn key<T: DecisionStates>(query: &Query) -> Key {
        Key {
            states: TypeId::of::<T>(),
            query: query.clone(),
        }
    }

    /// Takes the states cached under `key`, with the position they were folded up to.
    pub(super) fn take<T: DecisionStates>(&self, key: &Key) -> Option<(T, Option<Position>)> {
        let entry = self.states.take(key)?;
        // The key holds the type, so the downcast never fails; should it, it is a miss.
        let states = entry.states.downcast::<T>().ok()?;
        Some((*states, entry.after))
    }

    /// Keeps `states`, folded up to `after` (every event their queries select up to there).
    pub(super) fn keep<T: DecisionStates>(&self, key: &Key, states: T, after: Option<Position>) {
        self.states.put(
            key,
            Entry {
                states: Box::new(states),
                after,
            },
        );
    }

    /// Keeps `states`, folded up to `after`, once they have folded the events the decision
    /// just committed (as the decision's next read would deliver them), up to the last of
    /// them. States that cannot fold one (it does not decode as their event type) are not
    /// kept: the next decision reads them afresh and reports it.
    pub(super) fn keep_committed<T: DecisionStates, E: DomainEvent>(
        &self,
        key: &Key,
        queries: &[Query],
        mut states: T,
        after: Option<Position>,
        committed: &[EventEnvelope<E>],
    ) {
        let mut last = after;
        for envelope in committed {
            let Ok(event) = RawEvent::from_event(&envelope.event) else {
                return;
            };
            let raw = EventEnvelope {
                event_id: envelope.event_id,
                stream_id: envelope.stream_id.clone(),
                version: envelope.version,
                position: envelope.position,
                recorded_at: envelope.recorded_at,
                metadata: envelope.metadata.clone(),
                event,
            };
            if states.fold(queries, &raw).is_err() {
                return;
            }
            last = Some(envelope.position);
        }
        self.keep(key, states, last);
    }
}
