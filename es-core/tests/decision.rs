//! Decisions across aggregates on the memory store: a course with a capacity and students
//! with a limit of courses, decided by two states at once; races for the last seats,
//! retries that run out, events a state cannot decode, lost replies and repeats; and the
//! given/when/then harness (feature `testing`).

#![allow(clippy::unwrap_used, reason = "tests")]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use es_core::{
    AppendCondition, AppendError, Committed, Decided, Decider, Decision, DecisionError,
    DecisionState, DomainEvent, EventEnvelope, EventFilter, EventStore, ExpectedVersion, NewEvent,
    Position, Query, QueryItem, RawEvent, ReadError, RetryPolicy, StoreError, StoreErrorKind,
    StreamId, Tag, Version,
};
use es_memory::MemoryEventStore;
use futures_core::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

// ---- The domain -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CourseEvent {
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

fn tag(key: &str, value: &str) -> Tag {
    Tag::pair(key, value).unwrap()
}

fn defined(course: &str, capacity: u32) -> CourseEvent {
    CourseEvent::CourseDefined {
        course: course.into(),
        capacity,
    }
}

fn subscribed(course: &str, student: &str) -> CourseEvent {
    CourseEvent::StudentSubscribed {
        course: course.into(),
        student: student.into(),
    }
}

/// The seats of one course.
#[derive(Debug)]
struct CourseSeats {
    course: Tag,
    capacity: Option<u32>,
    taken: u32,
}

impl CourseSeats {
    fn new(course: Tag) -> Self {
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
struct StudentCourses {
    student: Tag,
    courses: Vec<String>,
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

const MAX_COURSES: usize = 3;

#[derive(Debug, PartialEq, thiserror::Error)]
enum SubscriptionError {
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
struct Subscribe {
    course: Tag,
    student: Tag,
    stream: StreamId,
}

impl Subscribe {
    fn new(course: &str, student: &str) -> Self {
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
struct DefineCourse {
    course: Tag,
    capacity: u32,
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

fn define(course: &str, capacity: u32) -> DefineCourse {
    DefineCourse {
        course: tag("course", course),
        capacity,
    }
}

/// A student subscribes to several courses at once, all or none: a `Vec` of states
/// nested in a tuple.
struct SubscribeMany {
    courses: Vec<Tag>,
    student: Subscribe,
}

impl SubscribeMany {
    fn new(courses: &[&str], student: &str) -> Self {
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
fn eager(attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(attempts)
        .with_backoff(Duration::ZERO, Duration::ZERO)
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

async fn all_events(store: &impl EventStore) -> Vec<EventEnvelope<CourseEvent>> {
    use futures_util::TryStreamExt as _;
    store
        .read_all::<CourseEvent>(Position::START, EventFilter::all())
        .try_collect()
        .await
        .unwrap()
}

// ---- A store that meddles ---------------------------------------------------------------

/// Ready the second time it is polled: lets every other future run first.
struct YieldOnce(bool);

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
struct Meddling {
    inner: MemoryEventStore,
    hooks: Arc<Hooks>,
}

#[derive(Default)]
struct Hooks {
    /// Let every other task run (and read) before appending.
    yield_first: AtomicBool,
    /// Append a subscription of another student to this course first: the condition of
    /// every decision on the course then fails.
    interlope: std::sync::Mutex<Option<String>>,
    interlopers: AtomicU32,
    /// Store the append but answer with a transient failure, this many times.
    lose_replies: AtomicU32,
    /// Fail for a moment without storing, this many times.
    refuse: AtomicU32,
    /// Events read by query so far.
    read: AtomicU32,
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

// ---- The decider ------------------------------------------------------------------------

#[test]
fn a_course_accepts_students_until_it_is_full() {
    block_on(async {
        let store = MemoryEventStore::new();
        let decider = Decider::new(store.clone());
        decider.execute(&define("c1", 2)).await.unwrap();

        let ada = decider.execute(&Subscribe::new("c1", "ada")).await.unwrap();
        assert_eq!(ada.events.len(), 1);
        assert_eq!(ada.events[0].event, subscribed("c1", "ada"));
        assert_eq!(ada.stream_id.as_ref(), "student-ada");
        assert_eq!(ada.attempts, 1);
        assert!(!ada.duplicate);
        // Decided on the course's definition, the one event its query selected then.
        let all = all_events(&store).await;
        assert_eq!(ada.after, Some(all[0].position));
        // Stored with the tags the event declares, as queries select it.
        assert_eq!(
            ada.events[0].metadata.tags,
            [tag("course", "c1"), tag("student", "ada")].into()
        );

        decider.execute(&Subscribe::new("c1", "bob")).await.unwrap();
        let eve = decider.execute(&Subscribe::new("c1", "eve")).await;
        let error = eve.unwrap_err();
        assert_eq!(
            error.rejection(),
            Some(&SubscriptionError::CourseFull { capacity: 2 })
        );
        assert!(
            error.to_string().contains("student-eve"),
            "names the stream: {error}"
        );
        assert_eq!(
            all_events(&store).await.len(),
            3,
            "a rejection appends nothing"
        );

        let again = decider.execute(&Subscribe::new("c1", "ada")).await;
        assert_eq!(
            again.unwrap_err().into_rejection(),
            Some(SubscriptionError::AlreadySubscribed)
        );
        let nowhere = decider.execute(&Subscribe::new("c9", "ada")).await;
        assert_eq!(
            nowhere.unwrap_err().into_rejection(),
            Some(SubscriptionError::NoCourse)
        );
    });
}

#[test]
fn the_second_state_limits_the_courses_of_a_student() {
    block_on(async {
        let decider = Decider::new(MemoryEventStore::new());
        for course in ["c1", "c2", "c3", "c4"] {
            decider.execute(&define(course, 10)).await.unwrap();
        }
        for course in ["c1", "c2", "c3"] {
            decider
                .execute(&Subscribe::new(course, "ada"))
                .await
                .unwrap();
        }
        let fourth = decider.execute(&Subscribe::new("c4", "ada")).await;
        assert_eq!(
            fourth.unwrap_err().into_rejection(),
            Some(SubscriptionError::TooManyCourses)
        );
        // Another student's courses do not count.
        decider.execute(&Subscribe::new("c4", "bob")).await.unwrap();
    });
}

#[test]
fn nested_states_decide_on_several_courses_at_once() {
    block_on(async {
        let store = MemoryEventStore::new();
        let decider = Decider::new(store.clone());
        for (course, capacity) in [("c1", 1), ("c2", 5), ("c3", 5)] {
            decider.execute(&define(course, capacity)).await.unwrap();
        }
        decider.execute(&Subscribe::new("c1", "bob")).await.unwrap();

        let all_or_none = decider
            .execute(&SubscribeMany::new(&["c2", "c1"], "ada"))
            .await;
        assert_eq!(
            all_or_none.unwrap_err().into_rejection(),
            Some(SubscriptionError::CourseFull { capacity: 1 })
        );
        assert_eq!(all_events(&store).await.len(), 4, "nothing appended");

        let both = decider
            .execute(&SubscribeMany::new(&["c2", "c3"], "ada"))
            .await
            .unwrap();
        let events: Vec<CourseEvent> = both.events.into_iter().map(|e| e.event).collect();
        assert_eq!(events, [subscribed("c2", "ada"), subscribed("c3", "ada")]);

        // Two of three taken: a pair more is one too many.
        let more = decider
            .execute(&SubscribeMany::new(&["c1", "c3"], "ada"))
            .await;
        assert_eq!(
            more.unwrap_err().into_rejection(),
            Some(SubscriptionError::TooManyCourses)
        );
    });
}

#[test]
fn a_decision_that_changes_nothing_appends_nothing() {
    block_on(async {
        let store = MemoryEventStore::new();
        let decider = Decider::new(store.clone());
        let first = decider.execute(&define("c1", 5)).await.unwrap();
        assert_eq!(first.events.len(), 1);
        let head = store.head().await.unwrap();

        let second = decider.execute(&define("c1", 7)).await.unwrap();
        assert!(second.events.is_empty());
        assert_eq!(second.position(), None);
        assert_eq!(second.after, first.position());
        assert_eq!(store.head().await.unwrap(), head);
    });
}

/// Sixteen decisions read the same course before any appends: one wins each round, the
/// others' conditions fail and they decide again, until the course is full.
#[test]
fn racing_decisions_fill_a_course_exactly() {
    block_on(async {
        let store = Meddling::default();
        let decider = Decider::new(store.clone()).with_retry_policy(eager(50));
        decider.execute(&define("c1", 10)).await.unwrap();
        store.hooks.yield_first.store(true, Ordering::SeqCst);

        let decisions: Vec<Subscribe> = (0..16)
            .map(|n| Subscribe::new("c1", &format!("s{n}")))
            .collect();
        let outcomes =
            futures_util::future::join_all(decisions.iter().map(|d| decider.execute(d))).await;

        let accepted: Vec<&Decided<CourseEvent>> =
            outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(accepted.len(), 10, "{outcomes:#?}");
        for outcome in &outcomes {
            if let Err(error) = outcome {
                assert_eq!(
                    error.rejection(),
                    Some(&SubscriptionError::CourseFull { capacity: 10 }),
                    "{error}"
                );
            }
        }
        assert!(
            accepted.iter().any(|d| d.attempts > 1),
            "every decision read before any appended, so some must have lost a race"
        );
        let subscriptions = all_events(&store)
            .await
            .into_iter()
            .filter(|e| matches!(e.event, CourseEvent::StudentSubscribed { .. }))
            .count();
        assert_eq!(subscriptions, 10);
    });
}

/// The same on threads of their own, each deciding on its own runtime, over several
/// courses: exactly the capacity is accepted every time.
#[test]
fn racing_threads_fill_each_course_exactly() {
    let store = MemoryEventStore::new();
    for round in 0..8 {
        let course = format!("t{round}");
        block_on(Decider::new(store.clone()).execute(&define(&course, 5))).unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|n| {
                let store = store.clone();
                let barrier = Arc::clone(&barrier);
                let decision = Subscribe::new(&course, &format!("s{round}-{n}"));
                std::thread::spawn(move || {
                    let decider = Decider::new(store).with_retry_policy(
                        RetryPolicy::default()
                            .with_backoff(Duration::from_micros(100), Duration::from_millis(2)),
                    );
                    barrier.wait();
                    // The rule's error only: the whole error is too large to return.
                    block_on(decider.execute(&decision))
                        .map(|decided| decided.attempts)
                        .map_err(DecisionError::into_rejection)
                })
            })
            .collect();
        let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(accepted, 5, "round {round}: {outcomes:#?}");
        assert!(
            outcomes.iter().all(|o| match o {
                Ok(_) => true,
                Err(rejection) => {
                    rejection == &Some(SubscriptionError::CourseFull { capacity: 5 })
                }
            }),
            "round {round}: {outcomes:#?}"
        );
    }
}

#[test]
fn retries_run_out_when_the_course_keeps_changing() {
    block_on(async {
        let store = Meddling::default();
        let decider = Decider::new(store.clone()).with_retry_policy(eager(3));
        decider.execute(&define("c1", 100)).await.unwrap();
        *store.hooks.interlope.lock().unwrap() = Some("c1".into());

        let error = decider
            .execute(&Subscribe::new("c1", "ada"))
            .await
            .unwrap_err();
        let DecisionError::Conflict {
            attempts,
            ref stream,
            ref query,
            ref event_type,
            ..
        } = error
        else {
            panic!("expected a conflict, got {error:?}");
        };
        assert_eq!(attempts, 3);
        assert_eq!(stream.as_ref(), "student-ada");
        assert_eq!(event_type, "StudentSubscribed");
        assert!(query.contains("course:…"), "{query}");
        let text = error.to_string();
        assert!(text.contains("3 attempts"), "{text}");
        assert!(text.contains("course:…"), "{text}");
        assert!(
            !text.contains("c1") && !text.contains("ada:"),
            "no tag values: {text}"
        );
        assert_eq!(store.hooks.interlopers.load(Ordering::SeqCst), 3);
        // The definition by the first attempt, then by each retry only the interloper
        // that beat the attempt before (not everything again: 1 + 2 + 3).
        assert_eq!(store.hooks.read.load(Ordering::SeqCst), 3);
        let ada = all_events(&store)
            .await
            .into_iter()
            .filter(|e| e.event == subscribed("c1", "ada"))
            .count();
        assert_eq!(ada, 0, "a failed condition appends nothing");
    });
}

/// A state that follows every event of a course, whatever its type.
struct CourseActivity(Tag, u32);

impl DecisionState for CourseActivity {
    type Event = CourseEvent;

    fn query(&self) -> Query {
        QueryItem::new().with_tag(self.0.clone()).into()
    }

    fn apply(&mut self, _: &CourseEvent) {
        self.1 += 1;
    }
}

struct Note(Tag);

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

#[test]
fn an_event_a_state_cannot_decode_is_a_typed_error() {
    block_on(async {
        let store = MemoryEventStore::new();
        let decider = Decider::new(store.clone());
        decider.execute(&define("c1", 5)).await.unwrap();
        let stream = StreamId::new("course", "c1").unwrap();
        let renamed = NewEvent::new(RawEvent::new(
            "CourseRenamed",
            1,
            serde_json::json!({ "name": "x" }),
        ))
        .with_metadata(es_core::Metadata::new().with_tag(tag("course", "c1")));
        store
            .append(&stream, ExpectedVersion::Any, vec![renamed])
            .await
            .unwrap();

        let error = decider
            .execute(&Note(tag("course", "c1")))
            .await
            .unwrap_err();
        let DecisionError::Undecodable {
            state,
            ref stream,
            version,
            ref event_type,
            ..
        } = error
        else {
            panic!("expected an undecodable event, got {error:?}");
        };
        assert!(state.ends_with("CourseActivity"), "{state}");
        assert_eq!(stream.as_ref(), "course-c1");
        assert_eq!(version, Version::new(2));
        assert_eq!(event_type, "CourseRenamed");
        let text = error.to_string();
        assert!(
            text.contains("`CourseRenamed`") && text.contains("version 2 of stream `course-c1`"),
            "{text}"
        );

        // The state that names its types reads past it.
        let seats = decider.execute(&Subscribe::new("c1", "ada")).await.unwrap();
        assert_eq!(seats.events.len(), 1);
    });
}

#[test]
fn a_command_id_given_twice_records_once() {
    block_on(async {
        let store = MemoryEventStore::new();
        let decider = Decider::new(store.clone());
        decider.execute(&define("c1", 1)).await.unwrap();
        let correlation = uuid::Uuid::now_v7();
        let context = es_core::CommandContext::new()
            .with_command_id(uuid::Uuid::now_v7())
            .with_correlation_id(correlation)
            .with_actor("registrar");

        let first = decider
            .execute_with(&Subscribe::new("c1", "ada"), context.clone())
            .await
            .unwrap();
        assert!(!first.duplicate);
        let metadata = &first.events[0].metadata;
        assert_eq!(metadata.correlation_id, Some(correlation));
        assert_eq!(metadata.causation_id, Some(context.command_id()));
        assert_eq!(metadata.actor.as_deref(), Some("registrar"));
        let stream = StreamId::new("student", "ada").unwrap();
        assert_eq!(first.events[0].event_id, context.event_id(&stream, 0));

        // Decided again, it would be rejected (the course is full, and by ada): the
        // repeat is recognised instead.
        let again = decider
            .execute_with(&Subscribe::new("c1", "ada"), context)
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.events, first.events);
        assert_eq!(all_events(&store).await.len(), 2);
    });
}

#[test]
fn a_lost_reply_is_recognised_not_rejected() {
    block_on(async {
        let store = Meddling::default();
        let decider = Decider::new(store.clone()).with_retry_policy(
            eager(5).with_store_retries(3, es_core::Backoff::new(Duration::ZERO, Duration::ZERO)),
        );
        decider.execute(&define("c1", 1)).await.unwrap();
        store.hooks.lose_replies.store(1, Ordering::SeqCst);

        // The append is stored but answered with a failure; decided again, the course is
        // full, by this very decision, which the decider finds by its event ids.
        let decided = decider.execute(&Subscribe::new("c1", "ada")).await.unwrap();
        assert_eq!(decided.events.len(), 1);
        assert_eq!(decided.events[0].event, subscribed("c1", "ada"));
        assert!(
            !decided.duplicate,
            "the caller gave no command id to repeat"
        );
        assert_eq!(all_events(&store).await.len(), 2);
    });
}

#[test]
fn a_store_failure_that_lasts_is_reported_as_such() {
    block_on(async {
        let store = Meddling::default();
        let decider = Decider::new(store.clone()).with_retry_policy(
            eager(5).with_store_retries(1, es_core::Backoff::new(Duration::ZERO, Duration::ZERO)),
        );
        decider.execute(&define("c1", 5)).await.unwrap();
        store.hooks.refuse.store(2, Ordering::SeqCst);

        let error = decider
            .execute(&Subscribe::new("c2", "ada"))
            .await
            .unwrap_err();
        // c2 does not exist: rejected, the store never asked to append.
        assert_eq!(error.rejection(), Some(&SubscriptionError::NoCourse));

        let error = decider
            .execute(&Subscribe::new("c1", "ada"))
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error:?}");
        assert!(matches!(error, DecisionError::Append { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("execute the decision again"), "{text}");
        assert_eq!(all_events(&store).await.len(), 1);

        // One failure is ridden out.
        store.hooks.refuse.store(1, Ordering::SeqCst);
        let decided = decider.execute(&Subscribe::new("c1", "ada")).await.unwrap();
        assert_eq!(decided.attempts, 2);
    });
}

#[test]
fn the_decider_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let decider = Decider::new(MemoryEventStore::new());
    let decision = Subscribe::new("c1", "ada");
    let future = decider.execute(&decision);
    assert_send(&future);
}

// ---- The harness ------------------------------------------------------------------------

#[cfg(feature = "testing")]
mod harness {
    use super::*;
    use es_core::testing::DecisionTestExt as _;

    #[test]
    fn a_subscription_is_accepted_while_seats_are_left() {
        Subscribe::test()
            .given([defined("c1", 2), subscribed("c1", "bob")])
            .when(Subscribe::new("c1", "ada"))
            .then_expect_selected_by_query()
            .then_expect_events_tagged([(
                subscribed("c1", "ada"),
                [tag("course", "c1"), tag("student", "ada")],
            )]);
    }

    #[test]
    fn a_full_course_rejects() {
        Subscribe::test()
            .given([defined("c1", 1), subscribed("c1", "bob")])
            .when(Subscribe::new("c1", "ada"))
            .then_expect_error(SubscriptionError::CourseFull { capacity: 1 });
    }

    #[test]
    fn events_of_other_courses_and_students_do_not_count() {
        Subscribe::test()
            .given([defined("c1", 1), defined("c2", 1)])
            .given_in(
                &StreamId::new("student", "bob").unwrap(),
                [subscribed("c2", "bob")],
            )
            .when(Subscribe::new("c1", "ada"))
            .then_expect_events([subscribed("c1", "ada")]);
    }

    #[test]
    fn each_state_gets_the_events_its_query_selects() {
        Subscribe::test()
            .given([defined("c1", 5), defined("c2", 5)])
            .given([subscribed("c1", "bob"), subscribed("c2", "ada")])
            .when(Subscribe::new("c1", "ada"))
            .then_expect_state(|(seats, ada)| {
                assert_eq!((seats.capacity, seats.taken), (Some(5), 1));
                assert_eq!(ada.courses, ["c2"]);
            });
    }

    #[test]
    fn nested_states_each_get_their_events() {
        SubscribeMany::test()
            .given([defined("c1", 1), defined("c2", 2), defined("c3", 3)])
            .given([subscribed("c2", "bob"), subscribed("c3", "ada")])
            .when(SubscribeMany::new(&["c1", "c2"], "ada"))
            .then_expect_selected_by_query()
            .then_expect_state(|(courses, ada)| {
                let seats: Vec<(Option<u32>, u32)> =
                    courses.iter().map(|s| (s.capacity, s.taken)).collect();
                assert_eq!(seats, [(Some(1), 0), (Some(2), 1)]);
                assert_eq!(ada.courses, ["c3"]);
            });
    }

    #[test]
    fn extra_tags_select_events_that_declare_none() {
        // Stored as an older version wrote it: a raw event, tagged in its metadata.
        let old = RawEvent::new(
            "CourseDefined",
            1,
            serde_json::json!({ "course": "c1", "capacity": 1 }),
        );
        Subscribe::test()
            .given_tagged([tag("course", "c1")], [old])
            .when(Subscribe::new("c1", "ada"))
            .then_expect_events([subscribed("c1", "ada")]);
    }

    #[test]
    fn a_decision_that_changes_nothing() {
        DefineCourse::test()
            .given([defined("c1", 5)])
            .when(define("c1", 9))
            .then_expect_no_events();
    }

    #[test]
    fn a_rejection_can_be_matched() {
        Subscribe::test()
            .given_no_previous_events()
            .when(Subscribe::new("c1", "ada"))
            .then_expect_error_matching(|e| matches!(e, SubscriptionError::NoCourse));
    }

    #[test]
    #[should_panic(expected = "the decision emitted other events than expected")]
    fn the_harness_fails_on_other_events() {
        Subscribe::test()
            .given([defined("c1", 2)])
            .when(Subscribe::new("c1", "ada"))
            .then_expect_events([subscribed("c1", "bob")]);
    }

    #[test]
    #[should_panic(expected = "the decision emitted other events or tags than expected")]
    fn the_harness_fails_on_other_tags() {
        Subscribe::test()
            .given([defined("c1", 2)])
            .when(Subscribe::new("c1", "ada"))
            .then_expect_events_tagged([(subscribed("c1", "ada"), [tag("course", "c1")])]);
    }

    #[test]
    #[should_panic(expected = "expected the decision to be rejected with CourseFull")]
    fn the_harness_fails_when_a_rejection_is_accepted() {
        Subscribe::test()
            .given([defined("c1", 2)])
            .when(Subscribe::new("c1", "ada"))
            .then_expect_error(SubscriptionError::CourseFull { capacity: 2 });
    }

    /// Forgets to tag its events with the course: two of them racing would both append.
    struct Careless(Subscribe);

    impl Decision for Careless {
        type State = (CourseSeats, StudentCourses);
        type Event = RawEvent;
        type Error = SubscriptionError;

        fn state(&self) -> Self::State {
            self.0.state()
        }

        fn stream(&self) -> StreamId {
            self.0.stream()
        }

        fn decide(&self, state: &Self::State) -> Result<Vec<RawEvent>, SubscriptionError> {
            self.0.decide(state).map(|events| {
                events
                    .iter()
                    .map(|e| RawEvent::from_event(e).unwrap())
                    .collect()
            })
        }
    }

    #[test]
    #[should_panic(expected = "is not selected by the decision's query")]
    fn the_harness_catches_events_the_query_misses() {
        Careless::test()
            .given([defined("c1", 2)])
            .when(Careless(Subscribe::new("c1", "ada")))
            .then_expect_selected_by_query()
            .then_expect_no_events();
    }

    #[test]
    #[should_panic(expected = "cannot be folded into the decision's states")]
    fn the_harness_fails_on_events_a_state_cannot_decode() {
        let renamed = RawEvent::new("CourseRenamed", 1, serde_json::json!({}));
        Note::test()
            .given_tagged([tag("course", "c1")], [renamed])
            .when(Note(tag("course", "c1")))
            .then_expect_no_events();
    }
}
