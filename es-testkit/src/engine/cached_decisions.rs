//! Decisions on states a decider kept (`Decider::with_cache`) on a store: one conditional
//! append and no read while nothing else writes, a read of what another writer stored
//! when it did, and deciders with stale states racing for the last seats. The domain is
//! [`decisions`](super::decisions)' courses, with a decision on one course alone (so that
//! decisions on it share their states).

use std::sync::Arc;

use es_core::{Decided, Decider, Decision, DecisionError, EventStore, Store, StreamId};

use super::PATIENCE;
use super::decisions::{
    CourseEvent, CourseSeats, RACERS, ROUNDS, decider, define, settle, stream, students,
    subscriptions, tag,
};
use crate::flaky::FlakyStore;

/// A student takes a seat of a course while it has one, unless the enrolment is made
/// `closed` (a setting of the decision, not of the state); its state is the course's seats
/// alone, so every enrolment in one course reads the same query.
#[derive(Debug, Clone)]
struct Enrol {
    course: String,
    student: String,
    closed: bool,
}

/// Why an enrolment is refused.
#[derive(Debug, PartialEq, thiserror::Error)]
enum EnrolError {
    #[error("no such course")]
    NoCourse,
    #[error("the course is full ({capacity} seats)")]
    Full { capacity: u32 },
    #[error("enrolment is closed")]
    Closed,
}

impl Decision for Enrol {
    type State = CourseSeats;
    type Event = CourseEvent;
    type Error = EnrolError;

    fn state(&self) -> CourseSeats {
        CourseSeats {
            course: tag("course", &self.course),
            capacity: None,
            taken: 0,
        }
    }

    fn stream(&self) -> StreamId {
        stream("student", &self.student)
    }

    fn decide(&self, seats: &CourseSeats) -> Result<Vec<CourseEvent>, EnrolError> {
        let capacity = seats.capacity.ok_or(EnrolError::NoCourse)?;
        if self.closed {
            return Err(EnrolError::Closed);
        }
        if seats.taken >= capacity {
            return Err(EnrolError::Full { capacity });
        }
        Ok(vec![CourseEvent::StudentSubscribed {
            course: self.course.clone(),
            student: self.student.clone(),
        }])
    }
}

/// Enrols `student` in `course`, within the patience; waits until what it recorded is
/// readable.
async fn enrol<S: EventStore>(
    decider: &Decider<S>,
    course: &str,
    student: &str,
) -> Result<Decided<CourseEvent>, DecisionError<EnrolError>> {
    let decision = Enrol {
        course: course.to_owned(),
        student: student.to_owned(),
        closed: false,
    };
    execute(decider, &decision).await
}

/// Executes `decision` within the patience; waits until what it recorded is readable.
async fn execute<S: EventStore>(
    decider: &Decider<S>,
    decision: &Enrol,
) -> Result<Decided<CourseEvent>, DecisionError<EnrolError>> {
    let Ok(outcome) = tokio::time::timeout(PATIENCE, decider.execute(decision)).await else {
        panic!(
            "enrolling {} in {} hangs",
            decision.student, decision.course
        );
    };
    let decided = outcome?;
    settle(decider.store(), decided.position()).await;
    Ok(decided)
}

/// Enrols `student` in `course` and expects it accepted, with one event.
async fn enrolled<S: EventStore>(
    decider: &Decider<S>,
    course: &str,
    student: &str,
) -> Decided<CourseEvent> {
    let decided = enrol(decider, course, student)
        .await
        .unwrap_or_else(|e| panic!("{student} in {course} is accepted, got {e:?}"));
    assert_eq!(decided.events.len(), 1, "{student} in {course}: one event");
    decided
}

/// Why the rule refused `outcome`; any other outcome fails the case.
fn refusal(outcome: Result<Decided<CourseEvent>, DecisionError<EnrolError>>) -> EnrolError {
    match outcome {
        Err(DecisionError::Rejected { error, .. }) => error,
        other => panic!("refused by the rule, got {other:?}"),
    }
}

// ---- The cases --------------------------------------------------------------------------

/// With a cache, the first decision on a course reads it, and the next ones decide on the
/// states kept, with the decider's own events folded in: one conditional append each and
/// no read, each on the condition after the previous one's event; the course still
/// fills exactly, and the refusal of the one too many comes from the rule.
pub async fn a_decider_with_a_cache_decides_on_kept_states_without_reading<S: Store>(store: S) {
    define(&store, "algebra", 3).await;
    let watched = FlakyStore::new(store.clone());
    let cached = decider(watched.clone()).with_cache(16);

    let first = enrolled(&cached, "algebra", "ada").await;
    let calls = watched.calls();
    assert_eq!(
        (calls.query_reads, calls.appends),
        (1, 1),
        "the first decision reads, then appends"
    );
    let mut previous = first.position();
    for student in ["bob", "cy"] {
        let decided = enrolled(&cached, "algebra", student).await;
        assert_eq!(
            decided.after, previous,
            "{student}: decided on the states kept, which include the previous decision's event"
        );
        assert_eq!(decided.attempts, 1, "{student}: one attempt");
        previous = decided.position();
    }
    let calls = watched.calls();
    assert_eq!(
        (calls.query_reads, calls.appends),
        (1, 3),
        "decisions on kept states are one conditional append each, with no read"
    );
    assert_eq!(
        refusal(enrol(&cached, "algebra", "dan").await),
        EnrolError::Full { capacity: 3 },
        "the fourth is refused as full"
    );
    assert_eq!(
        students(&subscriptions(&store, "algebra").await),
        ["ada", "bob", "cy"]
    );
}

/// States a rejection was decided on are kept where the decision read them: the next
/// decision on them appends at once, on the condition after that position, and is
/// accepted (kept at an earlier position, its condition would fail on events the states
/// already hold, and it would read them again).
pub async fn a_rejection_keeps_its_states_where_it_read<S: Store>(store: S) {
    define(&store, "chemistry", 3).await;
    let watched = FlakyStore::new(store.clone());
    let cached = decider(watched.clone()).with_cache(16);
    enrolled(&cached, "chemistry", "ada").await;
    let closed = Enrol {
        course: "chemistry".into(),
        student: "bob".into(),
        closed: true,
    };
    assert_eq!(
        refusal(execute(&cached, &closed).await),
        EnrolError::Closed,
        "a closed enrolment is refused"
    );
    let (reads, refused) = (watched.calls().query_reads, watched.conditions_failed());
    enrolled(&cached, "chemistry", "cy").await;
    enrolled(&cached, "chemistry", "dan").await;
    assert_eq!(
        (watched.calls().query_reads, watched.conditions_failed()),
        (reads, refused),
        "decided on the states the rejection kept, with no read and no refused append"
    );
    assert_eq!(
        refusal(enrol(&cached, "chemistry", "eve").await),
        EnrolError::Full { capacity: 3 },
        "the course is full"
    );
    assert_eq!(
        students(&subscriptions(&store, "chemistry").await),
        ["ada", "cy", "dan"]
    );
}

/// A decider's kept states go stale when another writer (here a decider without the
/// cache) stores what their query selects: the next decision on them is not made on the
/// stale states. Its append is refused, and it reads only what was stored since (not its
/// own event again, which the kept states hold), and decides again: the last seat is
/// given once, to the decision that found it free.
pub async fn a_kept_state_another_writer_moved_on_is_read_again<S: Store>(store: S) {
    define(&store, "botany", 3).await;
    let watched = FlakyStore::new(store.clone());
    let cached = decider(watched.clone()).with_cache(16);
    let other = decider(store.clone());

    enrolled(&cached, "botany", "ada").await;
    let taken = enrolled(&other, "botany", "bob").await;
    let (reads, refused) = (watched.calls().query_reads, watched.conditions_failed());
    // Two of three seats are taken: had the read after the refusal delivered ada's seat
    // again (folded twice), the course would look full.
    let last = enrolled(&cached, "botany", "cy").await;
    assert!(
        watched.conditions_failed() > refused,
        "the append on the stale states was refused"
    );
    assert_eq!(
        watched.calls().query_reads,
        reads + 1,
        "what the other writer stored was read, once"
    );
    assert_eq!(
        last.after,
        taken.position(),
        "decided on the states read up to the other writer's seat"
    );
    assert_eq!(
        refusal(enrol(&cached, "botany", "dan").await),
        EnrolError::Full { capacity: 3 },
        "the course is full now"
    );
    assert_eq!(
        students(&subscriptions(&store, "botany").await),
        ["ada", "bob", "cy"]
    );
}

/// Twelve deciders, each with its own cache (half of them with unread first attempts
/// too), each kept the seats of one course when it enrolled an early student, most of
/// them stale by the time they race: over three rounds every racer decides at once on
/// what it kept, and exactly the free seats are given, none twice; the log holds exactly
/// the capacity.
pub async fn deciders_with_stale_caches_racing_fill_exactly_the_capacity<S: Store>(store: S) {
    const FREE: usize = RACERS / 2;
    let overlapping = FlakyStore::new(store.clone());
    overlapping.yield_before_conditional_appends(3);
    let capacity = u32::try_from(RACERS + FREE).unwrap_or(u32::MAX);
    for round in 0..ROUNDS {
        let course = format!("cached-race-{round}");
        define(&store, &course, capacity).await;
        let deciders: Vec<_> = (0..RACERS)
            .map(|racer| {
                decider(overlapping.clone())
                    .with_cache(4)
                    .with_unread_first_attempt(racer % 2 == 0)
            })
            .collect();
        let mut seated = Vec::new();
        for (racer, decider) in deciders.iter().enumerate() {
            let student = format!("early-{round}-{racer}");
            enrolled(decider, &course, &student).await;
            seated.push(student);
        }
        let conditions_failed = overlapping.conditions_failed();

        let start = Arc::new(tokio::sync::Barrier::new(RACERS));
        let racers: Vec<_> = deciders
            .into_iter()
            .enumerate()
            .map(|(racer, decider)| {
                let (start, course) = (Arc::clone(&start), course.clone());
                let student = format!("late-{round}-{racer}");
                tokio::spawn(async move {
                    start.wait().await;
                    let outcome = enrol(&decider, &course, &student).await;
                    (student, outcome)
                })
            })
            .collect();
        let mut late = 0;
        for racer in racers {
            let (student, outcome) = tokio::time::timeout(PATIENCE, racer)
                .await
                .unwrap_or_else(|_| panic!("a decider of round {round} hangs"))
                .expect("decider task");
            match outcome {
                Ok(decided) => {
                    assert_eq!(decided.events.len(), 1, "{student}: one event");
                    seated.push(student);
                    late += 1;
                }
                Err(DecisionError::Rejected {
                    error: EnrolError::Full { capacity: c },
                    ..
                }) => assert_eq!(c, capacity),
                Err(other) => panic!("{student}: accepted or refused as full, got {other:?}"),
            }
        }
        assert_eq!(
            late, FREE,
            "round {round}: exactly the free seats are given"
        );
        // Every decider but the last to enrol early kept states that are stale by now:
        // each of their appends on them was refused, not decided on.
        let refused = overlapping.conditions_failed() - conditions_failed;
        assert!(
            refused >= u32::try_from(RACERS - 1).unwrap_or(u32::MAX),
            "round {round}: the {} stale states were each refused, got {refused} refusals",
            RACERS - 1
        );
        seated.sort();
        let head = store.head().await.expect("the log's head");
        settle(&store, head).await;
        assert_eq!(
            students(&subscriptions(&store, &course).await),
            seated,
            "round {round}: the log holds exactly the capacity"
        );
    }
}
