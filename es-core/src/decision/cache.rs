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

/// Folded states by their type and their queries.
pub(super) struct DecisionCache {
    states: StateCache<Key, Entry>,
}

/// One decision's place in its decider's cache: the key of its states, or nothing when
/// the decider keeps none, so that the decider takes and puts back states without asking
/// which.
pub(super) struct Slot<'a>(Option<(&'a DecisionCache, Key)>);

impl<'a> Slot<'a> {
    /// The place of states `T` whose queries are `queries`, in `cache` if there is one.
    pub(super) fn new<T: DecisionStates>(
        cache: Option<&'a DecisionCache>,
        queries: &[Query],
    ) -> Self {
        Self(cache.map(|cache| (cache, DecisionCache::key::<T>(queries))))
    }

    /// The states kept here, if any (see [`DecisionCache::take`]).
    pub(super) fn take<T: DecisionStates>(&self) -> Option<(T, Option<Position>)> {
        let (cache, key) = self.0.as_ref()?;
        cache.take(key)
    }

    /// Keeps `states` here (see [`DecisionCache::keep`]).
    pub(super) fn keep<T: DecisionStates>(&self, states: T, after: Option<Position>) {
        if let Some((cache, key)) = &self.0 {
            cache.keep(key, states, after);
        }
    }

    /// Keeps `states` here with the decision's committed events (see
    /// [`DecisionCache::keep_committed`]).
    pub(super) fn keep_committed<T: DecisionStates, E: DomainEvent>(
        &self,
        states: T,
        after: Option<Position>,
        committed: &[EventEnvelope<E>],
    ) {
        if let Some((cache, key)) = &self.0 {
            cache.keep_committed(key, states, after, committed);
        }
    }
}

/// What cached states are found by: states of one type whose queries are the same,
/// state by state, are the same fold of the same events (the
/// [`Decider::with_cache`](super::Decider::with_cache) contract), whichever decision made
/// them. State by state, not their union: a union drops repeated items, so `[a]` and
/// `[a, a]` (a `Vec` of states) have one union but fold differently.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    states: TypeId,
    queries: Vec<Query>,
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

    /// The key of states `T` whose queries, state by state, are `queries`.
    pub(super) fn key<T: DecisionStates>(queries: &[Query]) -> Key {
        Key {
            states: TypeId::of::<T>(),
            queries: queries.to_vec(),
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
    /// them. Each is matched on the tags it was stored with: those of its metadata and
    /// those it declares ([`DomainEvent::tags`]), added here too, so as not to rest on a
    /// store returning them merged. States that cannot fold one (it does not decode as
    /// their event type, or its tags are invalid) are not kept: the next decision reads
    /// afresh and reports it.
    pub(super) fn keep_committed<T: DecisionStates, E: DomainEvent>(
        &self,
        key: &Key,
        mut states: T,
        after: Option<Position>,
        committed: &[EventEnvelope<E>],
    ) {
        let mut last = after;
        for envelope in committed {
            let (Ok(event), Ok(declared)) =
                (RawEvent::from_event(&envelope.event), envelope.event.tags())
            else {
                return;
            };
            let mut metadata = envelope.metadata.clone();
            metadata.tags.extend(declared);
            let raw = EventEnvelope {
                event_id: envelope.event_id,
                stream_id: envelope.stream_id.clone(),
                version: envelope.version,
                position: envelope.position,
                recorded_at: envelope.recorded_at,
                metadata,
                event,
            };
            if states.fold(&key.queries, &raw).is_err() {
                return;
            }
            last = Some(envelope.position);
        }
        self.keep(key, states, last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::DecisionState;
    use crate::query::QueryItem;
    use crate::tag::Tag;

    struct Seats(u32);

    impl DecisionState for Seats {
        type Event = RawEvent;

        fn query(&self) -> Query {
            QueryItem::new()
                .with_tag(Tag::new("course:a").unwrap())
                .into()
        }

        fn apply(&mut self, _: &RawEvent) {
            self.0 += 1;
        }
    }

    #[test]
    fn states_are_found_by_their_queries_state_by_state() {
        let cache = DecisionCache::new(4);
        let one = vec![DecisionState::query(&Seats(0))];
        let twice = vec![
            DecisionState::query(&Seats(0)),
            DecisionState::query(&Seats(0)),
        ];
        cache.keep(
            &DecisionCache::key::<Vec<Seats>>(&one),
            vec![Seats(1)],
            None,
        );
        // One union, two shapes: the pair must not be handed the single state.
        assert!(
            cache
                .take::<Vec<Seats>>(&DecisionCache::key::<Vec<Seats>>(&twice))
                .is_none()
        );
        let (kept, after) = cache
            .take::<Vec<Seats>>(&DecisionCache::key::<Vec<Seats>>(&one))
            .expect("kept under its own queries");
        assert_eq!((kept.len(), kept[0].0, after), (1, 1, None));
        // Another type with the same queries is another entry.
        cache.keep(&DecisionCache::key::<Seats>(&one), Seats(7), None);
        assert!(
            cache
                .take::<Vec<Seats>>(&DecisionCache::key::<Vec<Seats>>(&one))
                .is_none()
        );
    }
}
