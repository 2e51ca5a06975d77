//! The states a decision folds: one [`DecisionState`], or several at once
//! ([`DecisionStates`] for tuples and vectors of them), and the routing of each event read
//! to the states whose own query selects it, shared by the [`Decider`](super::Decider) and
//! the test harness.

use std::any::type_name;

use crate::event::{DecodeError, DomainEvent, EventEnvelope, RawEvent};
use crate::query::Query;
use crate::stream::{Position, StreamId, Version};

/// One small state a decision depends on: the query of the events it needs, and how it
/// folds them.
///
/// A state is made for the entities it is about (`CourseSeats::new(course)`), so its
/// [`query`](DecisionState::query) names their tags; [`apply`](DecisionState::apply) then
/// sees every event that query selects, in log order, decoded as
/// [`Event`](DecisionState::Event). Keep states small and single-minded (the seats of one
/// course, the courses of one student): a [`Decision`](super::Decision) combines several,
/// and the store guards exactly the events they read.
///
/// Name the event types in the query (with [`QueryItem::of`](crate::QueryItem::of), say):
/// an event the query selects that `Event` cannot decode fails the decision with
/// [`DecisionError::Undecodable`](super::DecisionError::Undecodable), and a query of tags
/// alone selects every type that carries them.
///
/// ```
/// use es_core::{DecisionState, Query, QueryItem, Tag};
/// # use es_core::DomainEvent;
/// # #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// # enum CourseEvent { CourseDefined { capacity: u32 }, StudentSubscribed { student: String } }
///
/// /// How many seats course `course` has, and how many are taken.
/// struct CourseSeats {
///     course: Tag,
///     capacity: Option<u32>,
///     taken: u32,
/// }
///
/// impl DecisionState for CourseSeats {
///     type Event = CourseEvent;
///
///     fn query(&self) -> Query {
///         QueryItem::of::<CourseEvent>().with_tag(self.course.clone()).into()
///     }
///
///     fn apply(&mut self, event: &CourseEvent) {
///         match event {
///             CourseEvent::CourseDefined { capacity } => self.capacity = Some(*capacity),
///             CourseEvent::StudentSubscribed { .. } => self.taken += 1,
///         }
///     }
/// }
///
/// let mut seats = CourseSeats { course: Tag::pair("course", "c1")?, capacity: None, taken: 0 };
/// seats.apply(&CourseEvent::CourseDefined { capacity: 10 });
/// seats.apply(&CourseEvent::StudentSubscribed { student: "ada".into() });
/// assert_eq!((seats.capacity, seats.taken), (Some(10), 1));
/// assert!(seats.query().matches("StudentSubscribed", &[seats.course.clone()].into()));
/// # Ok::<(), es_core::TagError>(())
/// ```
pub trait DecisionState: Send + Sync + 'static {
    /// The events it folds, as they are decoded for it.
    type Event: DomainEvent;

    /// The events it needs: every event this selects is [applied](DecisionState::apply),
    /// and an append decided on it fails if one more is stored meanwhile.
    fn query(&self) -> Query;

    /// Folds one event its query selected. Deterministic and infallible, as an
    /// aggregate's `apply` is: it records what happened.
    fn apply(&mut self, event: &Self::Event);
}

/// The states a [`Decision`](super::Decision) decides on: one [`DecisionState`], a tuple
/// of up to eight, or a `Vec` of one type (the seats of each course a student picks).
///
/// The decision's query is the union of theirs ([`DecisionStates::query`]); each event
/// read is applied to every state whose own query selects it, so an event may feed
/// several. Implemented here for those shapes only (it is sealed): nest the states in a
/// tuple rather than a struct of your own.
pub trait DecisionStates: sealed::Fold + Send + Sync + 'static {
    /// The union of the states' queries: what the decision reads, and what its append
    /// is conditioned on.
    fn query(&self) -> Query {
        self.queries().into_iter().fold(Query::none(), Query::or)
    }
}

pub(crate) use self::sealed::Undecodable;

pub(crate) mod sealed {
    use super::{DecodeError, EventEnvelope, Position, Query, RawEvent, StreamId, Version};

    /// A stored event that a state's query selects but its event type does not decode.
    #[derive(Debug)]
    pub struct Undecodable {
        pub(crate) state: &'static str,
        pub(crate) stream: StreamId,
        pub(crate) version: Version,
        pub(crate) position: Position,
        pub(crate) event_type: String,
        pub(crate) schema_version: u32,
        pub(crate) source: DecodeError,
    }

    /// What the decider and the harness do with a set of states; not for use elsewhere.
    pub trait Fold {
        /// Each state's query, in order.
        #[doc(hidden)]
        fn queries(&self) -> Vec<Query>;

        /// Applies `envelope` to each state whose query (`queries`, as
        /// [`Fold::queries`] returned them) selects it.
        #[doc(hidden)]
        fn fold(
            &mut self,
            queries: &[Query],
            envelope: &EventEnvelope<RawEvent>,
        ) -> Result<(), Undecodable>;
    }
}

/// Applies `envelope` to `state` if `query` (the state's) selects it.
fn fold_one<S: DecisionState>(
    state: &mut S,
    query: &Query,
    envelope: &EventEnvelope<RawEvent>,
) -> Result<(), Undecodable> {
    let raw = &envelope.event;
    if !query.matches(&raw.event_type, &envelope.metadata.tags) {
        return Ok(());
    }
    match S::Event::decode_value(&raw.event_type, raw.schema_version, &raw.payload) {
        Ok(event) => {
            state.apply(&event);
            Ok(())
        }
        Err(source) => Err(Undecodable {
            state: type_name::<S>(),
            stream: envelope.stream_id.clone(),
            version: envelope.version,
            position: envelope.position,
            event_type: raw.event_type.clone(),
            schema_version: raw.schema_version,
            source,
        }),
    }
}

impl<S: DecisionState> sealed::Fold for S {
    fn queries(&self) -> Vec<Query> {
        vec![self.query()]
    }

    fn fold(
        &mut self,
        queries: &[Query],
        envelope: &EventEnvelope<RawEvent>,
    ) -> Result<(), Undecodable> {
        match queries {
            [query] => fold_one(self, query, envelope),
            _ => Ok(()),
        }
    }
}

impl<S: DecisionState> DecisionStates for S {}

impl<S: DecisionState> sealed::Fold for Vec<S> {
    fn queries(&self) -> Vec<Query> {
        self.iter().map(DecisionState::query).collect()
    }

    fn fold(
        &mut self,
        queries: &[Query],
        envelope: &EventEnvelope<RawEvent>,
    ) -> Result<(), Undecodable> {
        for (state, query) in self.iter_mut().zip(queries) {
            fold_one(state, query, envelope)?;
        }
        Ok(())
    }
}

impl<S: DecisionState> DecisionStates for Vec<S> {}

/// The impls for a tuple of states, `$index` each member's position.
macro_rules! tuple_states {
    ($($state:ident $index:tt),+) => {
        impl<$($state: DecisionState),+> sealed::Fold for ($($state,)+) {
            fn queries(&self) -> Vec<Query> {
                vec![$(self.$index.query()),+]
            }

                    fn fold(
                &mut self,
                queries: &[Query],
                envelope: &EventEnvelope<RawEvent>,
            ) -> Result<(), Undecodable> {
                $(
                    if let Some(query) = queries.get($index) {
                        fold_one(&mut self.$index, query, envelope)?;
                    }
                )+
                Ok(())
            }
        }

        impl<$($state: DecisionState),+> DecisionStates for ($($state,)+) {}
    };
}

tuple_states!(A 0);
tuple_states!(A 0, B 1);
tuple_states!(A 0, B 1, C 2);
tuple_states!(A 0, B 1, C 2, D 3);
tuple_states!(A 0, B 1, C 2, D 3, E 4);
tuple_states!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_states!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_states!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
