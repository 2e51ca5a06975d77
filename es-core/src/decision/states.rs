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
/// of up to eight sets of states, or a `Vec` of them (the seats of each course a student
/// picks). They nest: `(Vec<CourseSeats>, StudentCourses)` is a set.
///
/// The decision's query is the union of theirs ([`DecisionStates::query`]); each event
/// read is applied to every state whose own query selects it, so an event may feed
/// several. Implemented here for those shapes only (it is sealed): nest the states in
/// tuples rather than a struct of your own.
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
        /// Each state's query, in order, added to `queries`.
        #[doc(hidden)]
        fn add_queries(&self, queries: &mut Vec<Query>);

        /// Applies `envelope` to each state whose query selects it, `queries` starting
        /// with this set's own (as [`Fold::add_queries`] gave them); how many it used.
        #[doc(hidden)]
        fn fold(
            &mut self,
            queries: &[Query],
            envelope: &EventEnvelope<RawEvent>,
        ) -> Result<usize, Undecodable>;

        /// Each state's query, in order.
        #[doc(hidden)]
        fn queries(&self) -> Vec<Query> {
            let mut queries = Vec::new();
            self.add_queries(&mut queries);
            queries
        }
    }
}

use self::sealed::Fold;

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

/// Folds `envelope` into `states` with the queries left from `used` on; how many are used
/// then. (The queries were made from these very states, so they are never short; if
/// they were, the states without one would get nothing.)
fn fold_part<T: Fold>(
    states: &mut T,
    queries: &[Query],
    used: usize,
    envelope: &EventEnvelope<RawEvent>,
) -> Result<usize, Undecodable> {
    let rest = queries.get(used..).unwrap_or_default();
    Ok(used + states.fold(rest, envelope)?)
}

impl<S: DecisionState> Fold for S {
    fn add_queries(&self, queries: &mut Vec<Query>) {
        queries.push(self.query());
    }

    fn fold(
        &mut self,
        queries: &[Query],
        envelope: &EventEnvelope<RawEvent>,
    ) -> Result<usize, Undecodable> {
        match queries.first() {
            Some(query) => fold_one(self, query, envelope).map(|()| 1),
            None => Ok(0),
        }
    }
}

impl<S: DecisionState> DecisionStates for S {}

impl<T: DecisionStates> Fold for Vec<T> {
    fn add_queries(&self, queries: &mut Vec<Query>) {
        for states in self {
            states.add_queries(queries);
        }
    }

    fn fold(
        &mut self,
        queries: &[Query],
        envelope: &EventEnvelope<RawEvent>,
    ) -> Result<usize, Undecodable> {
        let mut used = 0;
        for states in self {
            used = fold_part(states, queries, used, envelope)?;
        }
        Ok(used)
    }
}

impl<T: DecisionStates> DecisionStates for Vec<T> {}

/// The impls for a tuple of sets of states, `$index` each member's position.
macro_rules! tuple_states {
    ($($states:ident $index:tt),+) => {
        impl<$($states: DecisionStates),+> Fold for ($($states,)+) {
            fn add_queries(&self, queries: &mut Vec<Query>) {
                $(self.$index.add_queries(queries);)+
            }

            fn fold(
                &mut self,
                queries: &[Query],
                envelope: &EventEnvelope<RawEvent>,
            ) -> Result<usize, Undecodable> {
                let used = 0;
                $(let used = fold_part(&mut self.$index, queries, used, envelope)?;)+
                Ok(used)
            }
        }

        impl<$($states: DecisionStates),+> DecisionStates for ($($states,)+) {}
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
