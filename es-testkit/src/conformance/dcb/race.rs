//! Concurrent decisions: writers racing for the last seats of a course.

use std::sync::Arc;
use std::time::Duration;

use es_core::{AppendError, Position, Query, QueryItem};

use super::{DcbEvent, DecisionRead, PATIENCE, put_one, query_now, stream, tag};
use es_core::Store;

/// Rounds of the race, each on a course of its own.
const ROUNDS: usize = 6;
/// Writers racing in each round, each for another student.
const RACERS: usize = 8;
/// Seats per course.
const CAPACITY: u32 = 3;
/// Seats taken before the race starts.
const TAKEN: u32 = 1;
/// Decisions one writer makes before it gives up: each failed condition means a rival
/// took a seat (or, on a store that holds fresh events back, that one was not readable
/// yet), so a correct store never comes near it.
const ATTEMPTS: u32 = 500;

/// What a seat on `course` for `student` depends on: the course's events and the
/// student's subscriptions.
fn seat_query(student: &str, course: &str) -> Query {
    Query::from(
        QueryItem::new()
            .with_types(["CourseDefined", "StudentSubscribed"])
            .with_tag(tag(&format!("course:{course}"))),
    )
    .or(QueryItem::new()
        .with_types(["StudentSubscribed"])
        .with_tag(tag(&format!("student:{student}"))))
}

/// Seats taken and capacity, as a decision folds them.
#[derive(Debug, Default)]
struct Seats {
    capacity: u32,
    taken: u32,
}

/// One writer: decides and appends until it has a seat (`true`) or reads the course full
/// (`false`), retrying a failed condition.
async fn take_a_seat<S: Store>(store: S, student: String, course: String) -> bool {
    let target = stream("student", &student);
    for attempt in 0..ATTEMPTS {
        let decision = DecisionRead::read(
            &store,
            seat_query(&student, &course),
            Seats::default(),
            |seats, event| match event {
                DcbEvent::CourseDefined {
                    course: c,
                    capacity,
                } if *c == course => {
                    seats.capacity = *capacity;
                }
                DcbEvent::StudentSubscribed { course: c, .. } if *c == course => seats.taken += 1,
                _ => {}
            },
        )
        .await;
        if decision.state.taken >= decision.state.capacity {
            return false;
        }
        // Let rivals read the same seats before this one appends, so that decisions
        // really overlap, also on a store whose calls never wait.
        tokio::task::yield_now().await;
        let event = DcbEvent::StudentSubscribed {
            student: student.clone(),
            course: course.clone(),
        };
        match decision.commit(&store, &target, event).await {
            Ok(_) => return true,
            Err(AppendError::ConditionFailed { .. }) if attempt < 8 => {
                tokio::task::yield_now().await
            }
            Err(AppendError::ConditionFailed { .. }) => {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(other) => panic!("{student} could not append: {other:?}"),
        }
    }
    panic!("{student} failed its condition {ATTEMPTS} times on `{course}`");
}

/// Eight tasks decide at once, over six rounds, whether a seat is left on a course with
/// three seats, one of them taken, and append on the condition that nothing of the course
/// (or of their student) changed, retrying when it did: exactly the two free seats are
/// taken in each round, each by one student, and the others read the course full.
pub async fn dcb_writers_race_for_the_last_seats<S: Store>(store: S) {
    for round in 0..ROUNDS {
        let course = format!("race-{round}");
        let defined = DcbEvent::CourseDefined {
            course: course.clone(),
            capacity: CAPACITY,
        };
        put_one(&store, &stream("course", &course), defined).await;
        let early = DcbEvent::StudentSubscribed {
            student: format!("early-{round}"),
            course: course.clone(),
        };
        put_one(&store, &stream("student", &format!("early-{round}")), early).await;

        let start = Arc::new(tokio::sync::Barrier::new(RACERS));
        let racers: Vec<_> = (0..RACERS)
            .map(|racer| {
                let (store, start, course) = (store.clone(), Arc::clone(&start), course.clone());
                let student = format!("r{round}-{racer}");
                tokio::spawn(async move {
                    start.wait().await;
                    (student.clone(), take_a_seat(store, student, course).await)
                })
            })
            .collect();
        let mut seated = Vec::new();
        for racer in racers {
            let (student, got) = tokio::time::timeout(PATIENCE, racer)
                .await
                .unwrap_or_else(|_| panic!("a racer of round {round} hangs"))
                .expect("racer task");
            if got {
                seated.push(student);
            }
        }
        assert_eq!(
            seated.len(),
            (CAPACITY - TAKEN) as usize,
            "round {round}: exactly the free seats are taken, by {seated:?}"
        );

        let subscriptions: Query = QueryItem::new()
            .with_types(["StudentSubscribed"])
            .with_tag(tag(&format!("course:{course}")))
            .into();
        let mut stored: Vec<String> = query_now(&store, &subscriptions, Position::START)
            .await
            .into_iter()
            .filter_map(|e| match e.event {
                DcbEvent::StudentSubscribed { student, .. } if !student.starts_with("early") => {
                    Some(student)
                }
                _ => None,
            })
            .collect();
        stored.sort();
        seated.sort();
        assert_eq!(
            stored, seated,
            "round {round}: the store holds exactly the winners' seats"
        );
    }
}
