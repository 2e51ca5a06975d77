//! Decisions across entities ([`Decider`]) on a store: a course with a capacity and
//! students with a limit of courses, decided by two states at once; racing deciders;
//! repeated command ids; and the tags the decided events carry.
//!
//! es-core's own tests run the decider on the memory store; these cases run it on every
//! kind of store, whose `read_query` and `append_if` it relies on (PostgreSQL holds fresh
//! events back from readers, so a decision may read a moment behind and must retry).

use std::sync::Arc;
use std::time::Duration;

use es_core::{
    CommandContext, Decided, Decider, Decision, DecisionError, DecisionState, EventEnvelope,
    EventStore, ExpectedVersion, NewEvent, Position, Query, QueryItem, RetryPolicy, StreamId, Tag,
    Version,
};
use futures_util::TryStreamExt as _;
use uuid::Uuid;

use super::PATIENCE;
use crate::flaky::FlakyStore;
use es_core::Store;

// ---- The domain -------------------------------------------------------------------------

/// What happens to courses; tagged by the derive's `#[tag]` fields, `course:<id>` on
/// both and `student:<id>` on a subscription.
#[derive(Debug, Clone, PartialEq, es_core::DomainEvent)]
pub(super) enum CourseEvent {
    /// A course was set up with a number of seats.
    CourseDefined {
        #[tag(prefix = "course")]
        id: String,
        capacity: u32,
    },
    /// A student took a seat.
    StudentSubscribed {
        #[tag(prefix = "course")]
        course: String,
        #[tag]
        student: String,
    },
}

/// The most courses one student takes.
const MAX_COURSES: u32 = 3;

/// A tag from its key and value; the cases write only valid ones.
pub(super) fn tag(key: &str, value: &str) -> Tag {
    Tag::pair(key, value).unwrap_or_else(|e| panic!("a `{key}` tag: {e}"))
}

/// The stream `category-id`.
pub(super) fn stream(category: &str, id: &str) -> StreamId {
    StreamId::new(category, id).expect("valid stream id")
}

/// The seats of one course: its events, by its tag.
#[derive(Debug)]
pub(super) struct CourseSeats {
    pub(super) course: Tag,
    pub(super) capacity: Option<u32>,
    pub(super) taken: u32,
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

/// How many courses one student takes: their subscriptions, by their tag.
#[derive(Debug)]
struct StudentCourses {
    student: Tag,
    courses: u32,
}

impl DecisionState for StudentCourses {
    type Event = CourseEvent;

    fn query(&self) -> Query {
        QueryItem::new()
            .with_types(["StudentSubscribed"])
            .with_tag(self.student.clone())
            .into()
    }

    fn apply(&mut self, _: &CourseEvent) {
        self.courses += 1;
    }
}

/// Why a subscription is refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(super) enum SubscriptionError {
    #[error("no such course")]
    NoCourse,
    #[error("the course is full ({capacity} seats)")]
    CourseFull { capacity: u32 },
    #[error("a student takes at most {MAX_COURSES} courses")]
    TooManyCourses,
}

/// A student subscribes to a course, appending to the student's stream.
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
            stream: stream("student", student),
        }
    }
}

impl Decision for Subscribe {
    type State = (CourseSeats, StudentCourses);
    type Event = CourseEvent;
    type Error = SubscriptionError;

    fn state(&self) -> Self::State {
        (
            CourseSeats {
                course: self.course.clone(),
                capacity: None,
                taken: 0,
            },
            StudentCourses {
                student: self.student.clone(),
                courses: 0,
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
        if seats.taken >= capacity {
            return Err(SubscriptionError::CourseFull { capacity });
        }
        if student.courses >= MAX_COURSES {
            return Err(SubscriptionError::TooManyCourses);
        }
        Ok(vec![CourseEvent::StudentSubscribed {
            course: self.course.value().to_owned(),
            student: self.student.value().to_owned(),
        }])
    }
}

/// A decider that retries lost races often and briefly: PostgreSQL may hold the newest
/// events back from a decision's read for a moment, and each such read costs one failed
/// condition.
pub(super) fn decider<S: EventStore>(store: S) -> Decider<S> {
    Decider::new(store).with_retry_policy(
        RetryPolicy::default()
            .with_max_attempts(500)
            .with_backoff(Duration::from_micros(200), Duration::from_millis(5)),
    )
}

/// Waits until log readers (and so the next decision's `read_query`) can read `position`.
pub(super) async fn settle<S: EventStore>(store: &S, position: Option<Position>) {
    let Some(position) = position else {
        return;
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !store
        .readable(position)
        .await
        .unwrap_or_else(|e| panic!("asking whether {position} is readable failed: {e:?}"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event at {position} is not readable after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Defines `course` with `capacity` seats (unconditionally, on its own stream), readable.
pub(super) async fn define<S: EventStore>(store: &S, course: &str, capacity: u32) {
    let event = CourseEvent::CourseDefined {
        id: course.to_owned(),
        capacity,
    };
    let committed = store
        .append(
            &stream("course", course),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(event)],
        )
        .await
        .unwrap_or_else(|e| panic!("defining course `{course}` failed: {e:?}"));
    settle(store, committed.position()).await;
}

/// Executes `decision` in `context` and waits until what it recorded is readable.
async fn execute<S: EventStore>(
    decider: &Decider<S>,
    decision: &Subscribe,
    context: CommandContext,
) -> Result<Decided<CourseEvent>, DecisionError<SubscriptionError>> {
    let Ok(outcome) = tokio::time::timeout(PATIENCE, decider.execute_with(decision, context)).await
    else {
        panic!("a decision on `{}` hangs", decision.stream);
    };
    let decided = outcome?;
    settle(decider.store(), decided.position()).await;
    Ok(decided)
}

/// Subscribes `student` to `course` and expects it accepted, with one event.
pub(super) async fn accepted<S: EventStore>(
    decider: &Decider<S>,
    course: &str,
    student: &str,
) -> Decided<CourseEvent> {
    let decided = execute(
        decider,
        &Subscribe::new(course, student),
        CommandContext::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{student} on {course} is accepted, got {e:?}"));
    assert_eq!(decided.events.len(), 1, "{student} on {course}: one event");
    assert!(
        !decided.duplicate,
        "{student} on {course}: a first execution"
    );
    decided
}

/// Subscribes `student` to `course` and returns why it was refused.
pub(super) async fn refused<S: EventStore>(
    decider: &Decider<S>,
    course: &str,
    student: &str,
) -> SubscriptionError {
    match execute(
        decider,
        &Subscribe::new(course, student),
        CommandContext::new(),
    )
    .await
    {
        Err(DecisionError::Rejected { stream: s, error }) => {
            assert_eq!(
                s,
                stream("student", student),
                "the refusal names the stream"
            );
            error
        }
        other => panic!("{student} on {course} is refused by the rule, got {other:?}"),
    }
}

/// The subscriptions to `course` in the log, by `read_query`.
pub(super) async fn subscriptions<S: EventStore>(
    store: &S,
    course: &str,
) -> Vec<EventEnvelope<CourseEvent>> {
    let query: Query = QueryItem::new()
        .with_types(["StudentSubscribed"])
        .with_tag(tag("course", course))
        .into();
    store
        .read_query::<CourseEvent>(&query, Position::START)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("read_query {query} failed: {e:?}"))
}

/// The whole of `stream`.
async fn read_stream<S: EventStore>(
    store: &S,
    stream: &StreamId,
) -> Vec<EventEnvelope<CourseEvent>> {
    store
        .read_stream::<CourseEvent>(stream, Version::INITIAL)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("reading `{stream}` failed: {e:?}"))
}

/// The students of `events`, sorted.
pub(super) fn students(events: &[EventEnvelope<CourseEvent>]) -> Vec<String> {
    let mut students: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.event {
            CourseEvent::StudentSubscribed { student, .. } => Some(student.clone()),
            CourseEvent::CourseDefined { .. } => None,
        })
        .collect();
    students.sort();
    students
}

// ---- The cases --------------------------------------------------------------------------

/// A course of two seats takes two students and refuses the third with the rule's error
/// (the seats are read by the course's tag); a student who takes three courses is
/// refused a fourth (read by the student's tag), though it has seats; a course never
/// defined is refused. The log holds exactly the accepted subscriptions.
pub async fn decider_subscribes_until_the_course_is_full<S: Store>(store: S) {
    let decider = decider(store.clone());
    define(&store, "algebra", 2).await;
    accepted(&decider, "algebra", "ada").await;
    accepted(&decider, "algebra", "bob").await;
    assert_eq!(
        refused(&decider, "algebra", "eve").await,
        SubscriptionError::CourseFull { capacity: 2 },
        "the third student finds the course full"
    );

    for course in ["art", "biology", "chemistry", "drama"] {
        define(&store, course, 10).await;
    }
    for course in ["art", "biology", "chemistry"] {
        accepted(&decider, course, "carl").await;
    }
    assert_eq!(
        refused(&decider, "drama", "carl").await,
        SubscriptionError::TooManyCourses,
        "a student's fourth course is refused"
    );
    // The limit is the student's, not the course's.
    accepted(&decider, "drama", "dora").await;
    assert_eq!(
        refused(&decider, "nowhere", "dora").await,
        SubscriptionError::NoCourse
    );

    assert_eq!(
        students(&subscriptions(&store, "algebra").await),
        ["ada", "bob"]
    );
    assert_eq!(students(&subscriptions(&store, "drama").await), ["dora"]);
    let carl: Vec<_> = read_stream(&store, &stream("student", "carl")).await;
    assert_eq!(carl.len(), 3, "carl's stream holds his three courses");
}

/// Rounds of the race, each on a course of its own.
pub(super) const ROUNDS: usize = 3;
/// How many rounds at most, when the first [`ROUNDS`] saw no decision lose a race: on a
/// server under load the deciders of a round may happen not to overlap.
const MAX_ROUNDS: usize = 20;
/// Deciders racing in each round, each for another student: no more than the
/// PostgreSQL test pool's connections, so none waits for one.
pub(super) const RACERS: usize = 12;
/// Seats per course.
const CAPACITY: u32 = 3;
/// Seats taken before the race starts.
const TAKEN: u32 = 1;

/// Twelve tasks decide at once, over three rounds, whether a seat is left on a course with
/// three seats, one taken: exactly the two free seats are given each round, the others
/// are refused as full, and the log (by `read_query`) holds exactly the capacity.
pub async fn deciders_racing_for_the_last_seats_fill_exactly_the_capacity<S: Store>(store: S) {
    // Every decider yields before its conditional append: on a store whose calls never
    // wait (memory), racing decisions then really read the same seats before any appends.
    let overlapping = FlakyStore::new(store.clone());
    overlapping.yield_before_conditional_appends(3);
    let mut lost_races = 0;
    let mut rounds = 0;
    for round in 0..MAX_ROUNDS {
        if round >= ROUNDS && lost_races > 0 && overlapping.conditions_failed() > 0 {
            break;
        }
        rounds += 1;
        let course = format!("race-{round}");
        define(&store, &course, CAPACITY).await;
        let mut early = Vec::new();
        for seat in 0..TAKEN {
            let student = format!("early-{round}-{seat}");
            accepted(&decider(store.clone()), &course, &student).await;
            early.push(student);
        }

        let start = Arc::new(tokio::sync::Barrier::new(RACERS));
        let racers: Vec<_> = (0..RACERS)
            .map(|racer| {
                let decider = decider(overlapping.clone());
                let (start, course) = (Arc::clone(&start), course.clone());
                let student = format!("r{round}-{racer}");
                tokio::spawn(async move {
                    start.wait().await;
                    let subscribe = Subscribe::new(&course, &student);
                    let outcome = decider.execute(&subscribe).await;
                    (student, outcome)
                })
            })
            .collect();
        let mut seated = Vec::new();
        for racer in racers {
            let (student, outcome) = tokio::time::timeout(PATIENCE, racer)
                .await
                .unwrap_or_else(|_| panic!("a decider of round {round} hangs"))
                .expect("decider task");
            match outcome {
                Ok(decided) => {
                    assert_eq!(decided.events.len(), 1, "{student}: one event");
                    lost_races += decided.attempts - 1;
                    seated.push(student);
                }
                Err(DecisionError::Rejected {
                    error: SubscriptionError::CourseFull { capacity },
                    ..
                }) => assert_eq!(capacity, CAPACITY),
                Err(other) => panic!("{student}: accepted or refused as full, got {other:?}"),
            }
        }
        assert_eq!(
            seated.len(),
            (CAPACITY - TAKEN) as usize,
            "round {round}: exactly the free seats are given, to {seated:?}"
        );
        seated.extend(early);
        seated.sort();

        // Every winner's event is readable once its task ended; wait for the last one.
        let head = store.head().await.expect("the log's head");
        settle(&store, head).await;
        let stored = subscriptions(&store, &course).await;
        assert_eq!(
            students(&stored),
            seated,
            "round {round}: the log holds exactly the capacity, the winners' seats and the early ones"
        );
    }
    // Without it the case could pass on deciders that never overlapped (on the memory
    // store, without the yields, none does), proving nothing about the condition.
    assert!(
        lost_races > 0 && overlapping.conditions_failed() > 0,
        "in {rounds} rounds of {RACERS} deciders, some decision lost a race and decided again"
    );
}

/// A decision executed twice under one command id records once: the repeat appends
/// nothing and returns the first execution's events marked duplicate, even though,
/// decided again, it would now be refused (it took the last seat). Another command for
/// the same student is decided afresh.
pub async fn decider_repeated_command_id_records_once<S: Store>(store: S) {
    let decider = decider(store.clone());
    define(&store, "solo", 1).await;
    define(&store, "duo", 2).await;
    let subscribe = Subscribe::new("solo", "ada");
    let context = CommandContext::new().with_command_id(Uuid::now_v7());

    let first = execute(&decider, &subscribe, context.clone())
        .await
        .expect("the first execution is accepted");
    assert!(!first.duplicate, "the first execution records");
    assert_eq!(first.events.len(), 1);

    let again = execute(&decider, &subscribe, context.clone())
        .await
        .expect("the repeat returns the first outcome, not the full course");
    assert!(again.duplicate, "the repeat is a duplicate");
    assert_eq!(
        again.events.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        first.events.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        "the repeat returns the first execution's events"
    );
    assert_eq!(students(&subscriptions(&store, "solo").await), ["ada"]);
    let ada = stream("student", "ada");
    let stored = read_stream(&store, &ada).await;
    assert_eq!(
        stored.len(),
        1,
        "the student's stream holds one subscription"
    );

    // The same decision under another command id is another command: the course is full.
    assert_eq!(
        refused(&decider, "solo", "ada").await,
        SubscriptionError::CourseFull { capacity: 1 }
    );
    // And a command id is no stream's: another decision under its own id goes through.
    let other = CommandContext::new().with_command_id(Uuid::now_v7());
    let duo = execute(&decider, &Subscribe::new("duo", "ada"), other)
        .await
        .expect("another course is accepted");
    assert!(!duo.duplicate);
    let stored = read_stream(&store, &ada).await;
    assert_eq!(stored.len(), 2, "two commands, two subscriptions");
}

/// The events a decision appends carry the tags their type declares (`course:<id>` and
/// `student:<id>`) in the envelope it returns and when read back from the stream, and the
/// tags select them: by the student's tag alone, a query finds exactly that student's.
pub async fn decided_events_carry_their_tags<S: Store>(store: S) {
    let decider = decider(store.clone());
    define(&store, "geometry", 5).await;
    let decided = accepted(&decider, "geometry", "ada").await;
    accepted(&decider, "geometry", "bob").await;
    let expected: std::collections::BTreeSet<Tag> =
        [tag("course", "geometry"), tag("student", "ada")].into();
    assert_eq!(
        decided.events[0].metadata.tags, expected,
        "the decided envelope carries the event's tags"
    );

    let read = read_stream(&store, &stream("student", "ada")).await;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].event_id, decided.events[0].event_id);
    assert_eq!(
        read[0].metadata.tags, expected,
        "read back, the event carries its tags"
    );

    let query: Query = QueryItem::new()
        .with_types(["StudentSubscribed"])
        .with_tag(tag("student", "ada"))
        .into();
    let selected: Vec<EventEnvelope<CourseEvent>> = store
        .read_query(&query, Position::START)
        .try_collect()
        .await
        .expect("read_query");
    assert_eq!(
        selected.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        [decided.events[0].event_id],
        "the student's tag selects exactly the student's event"
    );
}

/// A decider on a store that fails for a moment ([`FlakyStore`]). Its read of the states
/// drops after the first event: it folds them again from scratch, so a student who takes
/// two courses is not counted as taking three (which would refuse a third course), and
/// the subscription is accepted. Its read failing at once is ridden out too. Then its
/// append is stored but the reply lost: decided again, the decider finds its own events
/// by their ids and reports them, once in the log; with the caller's command id, as the
/// duplicate it may be.
pub async fn decider_rides_out_store_failures<S: Store>(store: S) {
    let flaky = FlakyStore::new(store.clone());
    let decider = decider(flaky.clone());
    // Fay's subscriptions come first in the log, so that the read drops after one of
    // them, not after the course's definition (which folds the same however often).
    for course in ["art", "biology"] {
        define(&store, course, 10).await;
        accepted(&decider, course, "fay").await;
    }
    define(&store, "algebra", 10).await;

    flaky.fail_reads_midway(1);
    let decided = accepted(&decider, "algebra", "fay").await;
    assert_eq!(flaky.reads_failed(), 1, "the decider's read dropped midway");
    assert_eq!(
        decided.attempts, 1,
        "a failed read is no decision: decided once, on the whole history"
    );
    flaky.fail_reads(1);
    assert_eq!(
        refused(&decider, "chemistry", "fay").await,
        SubscriptionError::NoCourse,
        "a read failing at once is read again"
    );
    assert_eq!(flaky.reads_failed(), 2, "the decider's read failed at once");
    define(&store, "chemistry", 10).await;
    assert_eq!(
        refused(&decider, "chemistry", "fay").await,
        SubscriptionError::TooManyCourses,
        "three courses, counted once each"
    );

    // Stored, the reply lost: the decider's own command id.
    define(&store, "geometry", 10).await;
    flaky.lose_append_replies(1);
    let before = flaky.appends();
    let decided = accepted(&decider, "geometry", "gus").await;
    assert!(flaky.appends() - before >= 2, "the append was tried again");
    let stored = read_stream(&store, &stream("student", "gus")).await;
    assert_eq!(stored.len(), 1, "recorded once");
    assert_eq!(stored[0].event_id, decided.events[0].event_id);

    // The caller's command id: reported as the duplicate it may be.
    flaky.lose_append_replies(1);
    let context = CommandContext::new().with_command_id(Uuid::now_v7());
    let decided = execute(
        &decider,
        &Subscribe::new("geometry", "hal"),
        context.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("a lost reply is recognised as success, got {e:?}"));
    assert!(
        decided.duplicate,
        "with the caller's command id, a duplicate"
    );
    let hal = stream("student", "hal");
    assert_eq!(
        decided
            .events
            .iter()
            .map(|e| e.event_id)
            .collect::<Vec<_>>(),
        [context.event_id(&hal, 0)]
    );
    assert_eq!(read_stream(&store, &hal).await.len(), 1, "recorded once");
    assert_eq!(
        students(&subscriptions(&store, "geometry").await),
        ["gus", "hal"]
    );
}
