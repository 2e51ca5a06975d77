//! Decisions across aggregates (Dynamic Consistency Boundaries): a rule that depends on
//! the events of several entities, checked and recorded atomically without a saga.
//!
//! A [`Decision`] is a command whose rule reads one or more small states, each a
//! [`DecisionState`] that declares the [`Query`](crate::Query) of the events it needs (by type and
//! [`Tag`]) and folds them. A [`Decider`] reads them all with one query (the union),
//! hands the folded states to [`Decision::decide`], and appends the events it returns on
//! the [condition](crate::AppendCondition) that no event the query selects was stored
//! after the last one it read. If one was (another decision on the same course got there
//! first), the condition fails and the decider reads and decides again, after a jittered
//! pause, up to its [`RetryPolicy`](crate::RetryPolicy).
//!
//! Events carry the tags that make them selectable: the ones the event type declares
//! ([`DomainEvent::tags`]), the ones the decision adds to each of its events
//! ([`Decision::tags`]) and any set in the context's metadata. The
//! events a decision appends must be selected by its own query, or two racing decisions
//! would not see each other: the harness (feature `testing`, `Subscribe::test()`) checks
//! it with `then_expect_selected_by_query`.
//!
//! # A course with a capacity, and students with a limit
//!
//! A student may subscribe to a course while it has seats left and while they take fewer
//! than three courses: a rule over two entities, neither of which can own it alone.
//!
//! ```
//! use es_core::{Decider, Decision, DecisionState, DomainEvent, Query, QueryItem, StreamId, Tag};
//! use es_memory::MemoryEventStore;
//!
//! /// Tagged `course:<id>`, and a subscription also `student:<id>`, by their `#[tag]` fields.
//! #[derive(Debug, Clone, PartialEq, DomainEvent)]
//! enum CourseEvent {
//!     CourseDefined {
//!         #[tag(prefix = "course")]
//!         course: String,
//!         capacity: u32,
//!     },
//!     StudentSubscribed {
//!         #[tag(prefix = "course")]
//!         course: String,
//!         #[tag(prefix = "student")]
//!         student: String,
//!     },
//! }
//!
//! /// The seats of one course.
//! struct CourseSeats {
//!     course: Tag,
//!     capacity: Option<u32>,
//!     taken: u32,
//! }
//!
//! impl DecisionState for CourseSeats {
//!     type Event = CourseEvent;
//!
//!     fn query(&self) -> Query {
//!         QueryItem::of::<CourseEvent>().with_tag(self.course.clone()).into()
//!     }
//!
//!     fn apply(&mut self, event: &CourseEvent) {
//!         match event {
//!             CourseEvent::CourseDefined { capacity, .. } => self.capacity = Some(*capacity),
//!             CourseEvent::StudentSubscribed { .. } => self.taken += 1,
//!         }
//!     }
//! }
//!
//! /// How many courses one student takes.
//! struct StudentCourses {
//!     student: Tag,
//!     courses: u32,
//! }
//!
//! impl DecisionState for StudentCourses {
//!     type Event = CourseEvent;
//!
//!     fn query(&self) -> Query {
//!         QueryItem::new().with_types(["StudentSubscribed"]).with_tag(self.student.clone()).into()
//!     }
//!
//!     fn apply(&mut self, _: &CourseEvent) {
//!         self.courses += 1;
//!     }
//! }
//!
//! #[derive(Debug, PartialEq, thiserror::Error)]
//! enum SubscriptionError {
//!     #[error("no such course")]
//!     NoCourse,
//!     #[error("the course is full ({capacity} seats)")]
//!     CourseFull { capacity: u32 },
//!     #[error("a student takes at most 3 courses")]
//!     TooManyCourses,
//! }
//!
//! /// A student subscribes to a course. The tags and the stream are made when the
//! /// decision is, so that an id that makes no valid tag is refused before anything runs.
//! struct Subscribe {
//!     course: Tag,
//!     student: Tag,
//!     stream: StreamId,
//! }
//!
//! impl Subscribe {
//!     fn new(course: &str, student: &str) -> Result<Self, Box<dyn std::error::Error>> {
//!         Ok(Self {
//!             course: Tag::pair("course", course)?,
//!             student: Tag::pair("student", student)?,
//!             stream: StreamId::new("student", student)?,
//!         })
//!     }
//! }
//!
//! impl Decision for Subscribe {
//!     type State = (CourseSeats, StudentCourses);
//!     type Event = CourseEvent;
//!     type Error = SubscriptionError;
//!
//!     fn state(&self) -> Self::State {
//!         (
//!             CourseSeats { course: self.course.clone(), capacity: None, taken: 0 },
//!             StudentCourses { student: self.student.clone(), courses: 0 },
//!         )
//!     }
//!
//!     fn stream(&self) -> StreamId {
//!         self.stream.clone()
//!     }
//!
//!     fn decide(&self, (seats, student): &Self::State) -> Result<Vec<CourseEvent>, SubscriptionError> {
//!         let capacity = seats.capacity.ok_or(SubscriptionError::NoCourse)?;
//!         if seats.taken >= capacity {
//!             return Err(SubscriptionError::CourseFull { capacity });
//!         }
//!         if student.courses >= 3 {
//!             return Err(SubscriptionError::TooManyCourses);
//!         }
//!         Ok(vec![CourseEvent::StudentSubscribed {
//!             course: self.course.value().to_owned(),
//!             student: self.student.value().to_owned(),
//!         }])
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! # use es_core::{EventStore as _, ExpectedVersion, NewEvent};
//! let store = MemoryEventStore::new();
//! # let course = StreamId::new("course", "c1")?;
//! # let defined = CourseEvent::CourseDefined { course: "c1".into(), capacity: 2 };
//! # store.append(&course, ExpectedVersion::NoStream, vec![NewEvent::new(defined)]).await?;
//! // Course `c1` was defined with 2 seats.
//! let decider = Decider::new(store);
//! decider.execute(&Subscribe::new("c1", "s1")?).await?;
//! let bob = decider.execute(&Subscribe::new("c1", "s2")?).await?;
//! assert_eq!(bob.events.len(), 1);
//!
//! let eve = decider.execute(&Subscribe::new("c1", "s3")?).await;
//! assert_eq!(
//!     eve.unwrap_err().rejection(),
//!     Some(&SubscriptionError::CourseFull { capacity: 2 })
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Costs and guarantees
//!
//! A decision reads every event its query selects, from the start of the log (a retry
//! reads only those stored since), unless its decider kept the states
//! ([`Decider::with_cache`]): keep states about single entities (one course, one
//! student), so that what their queries select stays short. Each state decodes the
//! events it is given itself, so an event that feeds two states is decoded twice. The store checks the condition and writes atomically (see
//! [`EventStore::append_if`](crate::EventStore::append_if)): of two decisions whose
//! events each fall in the other's query, at most one appends on what it read; the other
//! reads again. Decisions on disjoint tags never retry because of each other.

mod cache;
mod decider;
mod error;
mod states;

use crate::event::{DomainEvent, EventEnvelope};
use crate::stream::{Position, StreamId};
use crate::tag::Tag;

pub use self::decider::Decider;
pub use self::error::DecisionError;
#[cfg(feature = "testing")]
pub(crate) use self::states::sealed::Fold;
pub use self::states::{DecisionState, DecisionStates};

/// A command whose rule depends on the events of one or more entities: the states it
/// reads, the stream it appends to, and the rule.
///
/// The value is the command itself (who subscribes to which course). A
/// [`Decider`] executes it: it folds [`state`](Decision::state) from the events their
/// queries select, calls [`decide`](Decision::decide), and appends the events to
/// [`stream`](Decision::stream) on the condition that nothing the states read changed
/// meanwhile. Deciding has no side effects and may run several times (after a lost race).
///
/// Make the tags and the stream id when the decision is made (they are validated, and
/// so fail there rather than in the middle of a decision): [`state`](Decision::state) and
/// [`stream`](Decision::stream) then cannot fail. See the
/// [module docs](crate::decision) for a whole example.
pub trait Decision: Send + Sync {
    /// The states it decides on: one [`DecisionState`], or tuples and `Vec`s of them,
    /// nested as the rule needs ([`DecisionStates`]).
    type State: DecisionStates;
    /// The events it records.
    type Event: DomainEvent;
    /// Why the rule says no.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The states before any event is folded, made for the entities the decision is about
    /// (their queries name those entities' tags). Called once per execution, and again
    /// after the store failed for a moment while the states were being read (they are
    /// folded from scratch then); a retry after a lost race folds the newer events into
    /// the states it has.
    fn state(&self) -> Self::State;

    /// The stream the events are appended to. Its version does not guard the decision
    /// (the query's condition does); the events carry their tags besides.
    fn stream(&self) -> StreamId;

    /// The rule: the events to record, given the folded states (none is a decision that
    /// changes nothing, and appends nothing), or why not.
    ///
    /// # Errors
    ///
    /// Whatever the rule rejects the decision for.
    fn decide(&self, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error>;

    /// Tags every event it appends carries, besides those the event declares
    /// ([`DomainEvent::tags`]) and those of the [`CommandContext`](crate::CommandContext)'s
    /// metadata: for an entity the events do not name (an application whose id is its
    /// stream's, not a field). None by default. Called once per execution.
    ///
    /// The events must still be selected by the decision's own query, with these tags,
    /// for racing decisions to see each other: the harness checks that with
    /// `then_expect_selected_by_query`, counting these tags.
    fn tags(&self) -> Vec<Tag> {
        Vec::new()
    }
}

/// What executing a [`Decision`] recorded.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Decided<E> {
    /// The stream appended to.
    pub stream_id: StreamId,
    /// The recorded events, in order: none if the decision changed nothing.
    pub events: Vec<EventEnvelope<E>>,
    /// Whether the events were already stored by an earlier execution of the same
    /// command id, so that nothing new was recorded.
    pub duplicate: bool,
    /// The position the decision was made on: the last event its query selected when it
    /// read (`None` if there was none, or when an unread first attempt committed: see
    /// [`Decider::with_unread_first_attempt`]), or, when it committed on states the
    /// decider kept ([`Decider::with_cache`]) without reading, the position they include
    /// (often the decider's own previous event, which the query need not select).
    pub after: Option<Position>,
    /// How many times it was decided: 1 unless it lost races or the store failed for a
    /// moment (an unread first attempt that did not commit is not counted).
    pub attempts: u32,
}

impl<E> Decided<E> {
    /// The log position of the last event recorded, or `None` if none was: the position
    /// to wait for when reading one's own writes through a projection.
    pub fn position(&self) -> Option<Position> {
        self.events.last().map(|envelope| envelope.position)
    }
}
