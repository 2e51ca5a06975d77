//! What the decision tests share (`decision.rs`, `decision_races.rs`,
//! `decision_harness.rs`): a course with a capacity and students with a limit of courses,
//! decided by two states at once, and a memory store that meddles with conditional
//! appends.

#![allow(
    dead_code,
    reason = "each test binary uses its own part of this module"
)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use es_core::{
    AppendCondition, AppendError, Committed, Decision, DecisionState, DomainEvent, EventEnvelope,
    EventFilter, EventStore, ExpectedVersion, NewEvent, Position, Query, QueryItem, ReadError,
    RetryPolicy, StoreError, StoreErrorKind, StreamId, Tag, Version,
};
use es_memory::MemoryEventStore;
use futures_core::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

// ---- The domain -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum CourseEvent {
    CourseDefined { course: String, capacity: u32 },
    StudentSubscribed { course: String, student: String },
}

/// By hand until the derive's `#[tag]` lands: serde's externally tagged form gives the
/// type name and the payload.
impl DomainEvent for CourseEvent {
    const EVENT_TYPES: &'static [&'static str] = &["CourseDefined", "StudentSubscribed"];

    fn event_type(&self) -> &str {
        match self {
            Self::CourseDefined { .. } => "CourseDefined",
            Self::StudentSubscribed { .. } => "StudentSubscribed",
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Value, es_core::EncodeError> {
        let tagged = serde_json::to_value(self)
            .map_err(|error| es_core::EncodeError::new(self.event_type(), error))?;
        Ok(tagged
            .as_object()
            .and_then(|object| object.values().next().cloned())
            .unwrap_or_default())
    }

    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: Value,
    ) -> Result<Self, es_core::DecodeError> {
        if !Self::EVENT_TYPES.contains(&event_type) {
            return Err(es_core::DecodeError::UnknownEventType {
                event_type: event_type.to_owned(),
            });
        }
        let mut tagged = serde_json::Map::new();
        tagged.insert(event_type.to_owned(), payload);
        serde_json::from_value(Value::Object(tagged)).map_err(|error| {
            es_core::DecodeError::InvalidPayload {
                event_type: event_type.to_owned(),
                version: schema_version,
                source: error.into(),
            }
        })
    }

    fn tags(&self) -> Result<Vec<Tag>, es_core::TagError> {
        match self {
            Self::CourseDefined { course, .. } => Ok(vec![Tag::pair("course", course)?]),
            Self::StudentSubscribed { course, student } => Ok(vec![
                Tag::pair("course", course)?,
                Tag::pair("student", student)?,
            ]),
        }
    }
}

pub(crate) fn tag(key: &str, value: &str) -> Tag {
    Tag::pair(key, value).unwrap()
}

pub(crate) fn defined(course: &str, capacity: u32) -> CourseEvent {
    CourseEvent::CourseDefined {
        course: course.into(),
        capacity,
    }
}

pub(crate) fn subscribed(course: &str, student: &str) -> CourseEvent {
    CourseEvent::StudentSubscribed {
        course: course.into(),
        student: student.into(),
    }
}

/// The seats of one course.
#[derive(Debug)]
pub(crate) struct CourseSeats {
    pub(crate) course: Tag,
    pub(crate) capacity: Option<u32>,
    pub(crate) taken: u32,
}

impl CourseSeats {
    pub(crate) fn new(course: Tag) -> Self {
        Self {
            course,
            capacity: None,
            taken: 0,
        }
    }
}

impl DecisionState for CourseSeats {
    type Event = CourseEvent;

    fn query(&self) -> Query {
        QueryItem::of::<CourseEvent>()
            .with_tag(self.course.clone())
            .into()
    }

    fn apply(&mut self, event: &CourseEvent) {
        match event {
            CourseEvent::CourseDefined { capacity, .. } => self.capacity = Some(*capacity),
            CourseEvent::StudentSubscribed { .. } => self.taken += 1,
        }
    }
}

/// The courses one student takes.
#[derive(Debug)]
pub(crate) struct StudentCourses {
    pub(crate) student: Tag,
    pub(crate) courses: Vec<String>,
}

impl DecisionState for StudentCourses {
    type Event = CourseEvent;

    fn query(&self) -> Query {
        QueryItem::new()
            .with_types(["StudentSubscribed"])
            .with_tag(self.student.clone())
            .into()
    }

    fn apply(&mut self, event: &CourseEvent) {
        if let CourseEvent::StudentSubscribed { course, .. } = event {
            self.courses.push(course.clone());
        }
    }
}

pub(crate) const MAX_COURSES: usize = 3;

#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum SubscriptionError {
    #[error("no such course")]
    NoCourse,
    #[error("the course is full ({capacity} seats)")]
    CourseFull { capacity: u32 },
    #[error("the student already takes the course")]
    AlreadySubscribed,
    #[error("a student takes at most {MAX_COURSES} courses")]
    TooManyCourses,
}

/// A student subscribes to a course.
#[derive(Debug, Clone)]
pub(crate) struct Subscribe {
    pub(crate) course: Tag,
    pub(crate) student: Tag,
    pub(crate) stream: StreamId,
}

impl Subscribe {
    pub(crate) fn new(course: &str, student: &str) -> Self {
        Self {
            course: tag("course", course),
            student: tag("student", student),
            stream: StreamId::new("student", student).unwrap(),
        }
    }
}

impl Decision for Subscribe {
    type State = (CourseSeats, StudentCourses);
    type Event = CourseEvent;
    type Error = SubscriptionError;

    fn state(&self) -> Self::State {
        (
            CourseSeats::new(self.course.clone()),
            StudentCourses {
                student: self.student.clone(),
                courses: Vec::new(),
            },
        )
    }

    fn stream(&self) -> StreamId {
        self.stream.clone()
    }

    fn decide(
        &self,
        (seats, student): &Self::State,
    ) -> Result<Vec<CourseEvent>, SubscriptionError> {
        let capacity = seats.capacity.ok_or(SubscriptionError::NoCourse)?;
        if student.courses.iter().any(|c| c == self.course.value()) {
            return Err(SubscriptionError::AlreadySubscribed);
        }
        if seats.taken >= capacity {
            return Err(SubscriptionError::CourseFull { capacity });
        }
        if student.courses.len() >= MAX_COURSES {
            return Err(SubscriptionError::TooManyCourses);
        }
        Ok(vec![subscribed(self.course.value(), self.student.value())])
    }
}

/// Defines a course unless it exists: one state, and nothing to do the second time.
pub(crate) struct DefineCourse {
    pub(crate) course: Tag,
    pub(crate) capacity: u32,
}

impl Decision for DefineCourse {
    type State = CourseSeats;
    type Event = CourseEvent;
    type Error = std::convert::Infallible;

    fn state(&self) -> CourseSeats {
        CourseSeats::new(self.course.clone())
    }

    fn stream(&self) -> StreamId {
        StreamId::new("course", self.course.value()).unwrap()
    }

    fn decide(&self, seats: &CourseSeats) -> Result<Vec<CourseEvent>, Self::Error> {
        Ok(match seats.capacity {
            Some(_) => Vec::new(),
            None => vec![defined(self.course.value(), self.capacity)],
        })
    }
}

pub(crate) fn define(course: &str, capacity: u32) -> DefineCourse {
    DefineCourse {
        course: tag("course", course),
        capacity,
    }
}

/// A student subscribes to several courses at once, all or none: a `Vec` of states
/// nested in a tuple.
pub(crate) struct SubscribeMany {
    pub(crate) courses: Vec<Tag>,
    pub(crate) student: Subscribe,
}

impl SubscribeMany {
    pub(crate) fn new(courses: &[&str], student: &str) -> Self {
        Self {
            courses: courses.iter().map(|c| tag("course", c)).collect(),
            student: Subscribe::new(courses.first().copied().unwrap_or("none"), student),
        }
    }
}

impl Decision for SubscribeMany {
    type State = (Vec<CourseSeats>, StudentCourses);
    type Event = CourseEvent;
    type Error = SubscriptionError;

    fn state(&self) -> Self::State {
        let seats = self.courses.iter().cloned().map(CourseSeats::new).collect();
        (seats, self.student.state().1)
    }

    fn stream(&self) -> StreamId {
        self.student.stream()
    }

    fn decide(
        &self,
        (courses, student): &Self::State,
    ) -> Result<Vec<CourseEvent>, SubscriptionError> {
        if student.courses.len() + courses.len() > MAX_COURSES {
            return Err(SubscriptionError::TooManyCourses);
        }
        courses
            .iter()
            .map(|seats| {
                let capacity = seats.capacity.ok_or(SubscriptionError::NoCourse)?;
                if seats.taken >= capacity {
                    return Err(SubscriptionError::CourseFull { capacity });
                }
                Ok(subscribed(
                    seats.course.value(),
                    self.student.student.value(),
                ))
            })
            .collect()
    }
}

/// Retries without pauses: the tests race on purpose and must not wait for it.
pub(crate) fn eager(attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(attempts)
        .with_backoff(Duration::ZERO, Duration::ZERO)
}

pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

pub(crate) async fn all_events(store: &impl EventStore) -> Vec<EventEnvelope<CourseEvent>> {
    use futures_util::TryStreamExt as _;
    store
        .read_all::<CourseEvent>(Position::START, EventFilter::all())
        .try_collect()
        .await
        .unwrap()
}

// ---- A store that meddles ---------------------------------------------------------------

/// Ready the second time it is polled: lets every other future run first.
pub(crate) struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            context.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// The memory store, with what a test asks of it before each conditional append.
#[derive(Clone, Default)]
pub(crate) struct Meddling {
    pub(crate) inner: MemoryEventStore,
    pub(crate) hooks: Arc<Hooks>,
}

#[derive(Default)]
pub(crate) struct Hooks {
    /// Let every other task run (and read) before appending.
    pub(crate) yield_first: AtomicBool,
    /// Append a subscription of another student to this course first: the condition of
    /// every decision on the course then fails.
    pub(crate) interlope: std::sync::Mutex<Option<String>>,
    pub(crate) interlopers: AtomicU32,
    /// Store the append but answer with a transient failure, this many times.
    pub(crate) lose_replies: AtomicU32,
    /// Fail for a moment without storing, this many times.
    pub(crate) refuse: AtomicU32,
    /// Events read by query so far.
    pub(crate) read: AtomicU32,
}

impl EventStore for Meddling {
    fn append<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
    ) -> impl Future<Output = Result<Committed<E>, AppendError>> + Send {
        self.inner.append(stream, expected, events)
    }

    fn stream_version(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Version, ReadError>> + Send {
        self.inner.stream_version(stream)
    }

    fn read_stream<E: DomainEvent>(
        &self,
        stream: &StreamId,
        from: Version,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        self.inner.read_stream(stream, from)
    }

    fn read_all<E: DomainEvent>(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        self.inner.read_all(after, filter)
    }

    fn subscribe<E: DomainEvent>(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        self.inner.subscribe(after, filter)
    }

    fn append_if<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
        condition: AppendCondition,
    ) -> impl Future<Output = Result<Committed<E>, AppendError>> + Send {
        let this = self.clone();
        let stream = stream.clone();
        async move {
            if this.hooks.yield_first.load(Ordering::SeqCst) {
                YieldOnce(false).await;
            }
            let refuse = this.hooks.refuse.load(Ordering::SeqCst);
            if refuse > 0 {
                this.hooks.refuse.store(refuse - 1, Ordering::SeqCst);
                return Err(AppendError::Store {
                    stream,
                    source: StoreError::new("append", "timeout").with_kind(StoreErrorKind::Timeout),
                });
            }
            let course = this.hooks.interlope.lock().unwrap().clone();
            if let Some(course) = course {
                let n = this.hooks.interlopers.fetch_add(1, Ordering::SeqCst);
                let student = format!("interloper{n}");
                let other = StreamId::new("student", &student).unwrap();
                let event = NewEvent::new(subscribed(&course, &student));
                this.inner
                    .append(&other, ExpectedVersion::Any, vec![event])
                    .await
                    .unwrap();
            }
            let committed = this
                .inner
                .append_if(&stream, expected, events, condition)
                .await?;
            let lose = this.hooks.lose_replies.load(Ordering::SeqCst);
            if lose > 0 {
                this.hooks.lose_replies.store(lose - 1, Ordering::SeqCst);
                return Err(AppendError::Store {
                    stream,
                    source: StoreError::new("append", "connection reset")
                        .with_kind(StoreErrorKind::Unavailable),
                });
            }
            Ok(committed)
        }
    }

    fn read_query<E: DomainEvent>(
        &self,
        query: &Query,
        after: Position,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        use futures_util::StreamExt as _;
        let hooks = Arc::clone(&self.hooks);
        self.inner.read_query(query, after).inspect(move |_| {
            hooks.read.fetch_add(1, Ordering::SeqCst);
        })
    }

    fn head(&self) -> impl Future<Output = Result<Option<Position>, ReadError>> + Send {
        self.inner.head()
    }

    fn archive_stream(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.archive_stream(stream)
    }

    fn is_archived(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<bool, ReadError>> + Send {
        self.inner.is_archived(stream)
    }

    fn find_event<E: DomainEvent>(
        &self,
        event_id: uuid::Uuid,
    ) -> impl Future<Output = Result<Option<EventEnvelope<E>>, ReadError>> + Send {
        self.inner.find_event(event_id)
    }
}

/// A state that follows every event of a course, whatever its type.
pub(crate) struct CourseActivity(pub(crate) Tag, pub(crate) u32);

impl DecisionState for CourseActivity {
    type Event = CourseEvent;

    fn query(&self) -> Query {
        QueryItem::new().with_tag(self.0.clone()).into()
    }

    fn apply(&mut self, _: &CourseEvent) {
        self.1 += 1;
    }
}

pub(crate) struct Note(pub(crate) Tag);

impl Decision for Note {
    type State = (CourseActivity, CourseSeats);
    type Event = CourseEvent;
    type Error = SubscriptionError;

    fn state(&self) -> Self::State {
        (
            CourseActivity(self.0.clone(), 0),
            CourseSeats::new(self.0.clone()),
        )
    }

    fn stream(&self) -> StreamId {
        StreamId::new("course", self.0.value()).unwrap()
    }

    fn decide(&self, _: &Self::State) -> Result<Vec<CourseEvent>, SubscriptionError> {
        Ok(Vec::new())
    }
}

/// The events of one term, by its tag: events the decision itself tags (they name no
/// term).
pub(crate) struct TermEvents(pub(crate) Tag, pub(crate) u32);

impl DecisionState for TermEvents {
    type Event = CourseEvent;

    fn query(&self) -> Query {
        QueryItem::new().with_tag(self.0.clone()).into()
    }

    fn apply(&mut self, _: &CourseEvent) {
        self.1 += 1;
    }
}

/// Records the events it is given, in a term: each tagged `term:<id>` by the decision
/// ([`Decision::tags`]), since no event names its term.
pub(crate) struct InTerm {
    pub(crate) term: Tag,
    pub(crate) events: Vec<CourseEvent>,
}

impl InTerm {
    pub(crate) fn new(term: &str, events: impl IntoIterator<Item = CourseEvent>) -> Self {
        Self {
            term: tag("term", term),
            events: events.into_iter().collect(),
        }
    }
}

impl Decision for InTerm {
    type State = TermEvents;
    type Event = CourseEvent;
    type Error = std::convert::Infallible;

    fn state(&self) -> TermEvents {
        TermEvents(self.term.clone(), 0)
    }

    fn stream(&self) -> StreamId {
        StreamId::new("term", self.term.value()).unwrap()
    }

    fn decide(&self, _: &TermEvents) -> Result<Vec<CourseEvent>, Self::Error> {
        Ok(self.events.clone())
    }

    fn tags(&self) -> Vec<Tag> {
        vec![self.term.clone()]
    }
}
