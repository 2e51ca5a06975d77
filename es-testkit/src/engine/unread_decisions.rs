//! Decisions whose first attempt reads nothing (`Decider::with_unread_first_attempt`) on
//! a store: one conditional append on something new, a read when the store holds what
//! the query selects, the policy's store retries, and racing deciders. The domain is
//! [`decisions`](super::decisions)' courses, with one more decision: defining a course.

use std::sync::Arc;

use es_core::{
    Decider, Decision, DecisionError, EventEnvelope, EventStore, Position, Query, QueryItem,
    RetryPolicy, Store, StreamId,
};
use futures_util::TryStreamExt as _;

use super::PATIENCE;
use super::decisions::{
    CourseEvent, CourseSeats, RACERS, ROUNDS, SubscriptionError, accepted, decider, refused,
    settle, stream, students, subscriptions, tag,
};
use crate::flaky::FlakyStore;

/// A course is set up once: refused if it was already. On a new course its state starts
/// as it ends up after reading nothing, so a decider whose first attempt is unread decides
/// it without a read.
#[derive(Debug, Clone)]
struct DefineCourse {
    id: String,
    capacity: u32,
}

/// Why a course definition is refused.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("the course is defined already")]
struct AlreadyDefined;

impl Decision for DefineCourse {
    type State = CourseSeats;
    type Event = CourseEvent;
    type Error = AlreadyDefined;

    fn state(&self) -> CourseSeats {
        CourseSeats {
            course: tag("course", &self.id),
            capacity: None,
            taken: 0,
        }
    }

    fn stream(&self) -> StreamId {
        stream("course", &self.id)
    }

    fn decide(&self, seats: &CourseSeats) -> Result<Vec<CourseEvent>, AlreadyDefined> {
        if seats.capacity.is_some() {
            return Err(AlreadyDefined);
        }
        Ok(vec![CourseEvent::CourseDefined {
            id: self.id.clone(),
            capacity: self.capacity,
        }])
    }
}

/// The definitions of `course` in the log, by `read_query`.
async fn definitions<S: EventStore>(store: &S, course: &str) -> Vec<EventEnvelope<CourseEvent>> {
    let query: Query = QueryItem::new()
        .with_types(["CourseDefined"])
        .with_tag(tag("course", course))
        .into();
    store
        .read_query::<CourseEvent>(&query, Position::START)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("read_query {query} failed: {e:?}"))
}

// ---- The cases --------------------------------------------------------------------------

/// With its first attempt unread, a decision on something new is one conditional append
/// on nothing read (`after` is `None`, one attempt); on something that exists the append
/// is refused, and the decision reads and decides as usual; the rules hold as they do
/// with a read first.
pub async fn an_unread_first_attempt_reads_only_when_the_query_selects_events<S: Store>(store: S) {
    // A read would fail, and a decider that rides out no failure would report it: the
    // decision on a new course must not read.
    let watched = FlakyStore::new(store.clone());
    watched.fail_reads(1);
    let unread = Decider::new(watched.clone())
        .with_retry_policy(RetryPolicy::default().with_store_retries(0, es_core::Backoff::none()))
        .with_unread_first_attempt(true);
    let new = DefineCourse {
        id: "geometry".into(),
        capacity: 2,
    };
    let decided = tokio::time::timeout(PATIENCE, unread.execute(&new))
        .await
        .expect("a definition hangs")
        .unwrap_or_else(|e| panic!("a new course is defined without a read, got {e:?}"));
    assert_eq!(
        (decided.after, decided.attempts, decided.events.len()),
        (None, 1, 1),
        "decided on nothing read, in one attempt"
    );
    assert_eq!(watched.reads_failed(), 0, "nothing was read");
    settle(&store, decided.position()).await;
    let decider = decider(store.clone()).with_unread_first_attempt(true);
    let again = DefineCourse {
        id: "geometry".into(),
        capacity: 9,
    };
    match tokio::time::timeout(PATIENCE, decider.execute(&again))
        .await
        .expect("a definition hangs")
    {
        Err(DecisionError::Rejected {
            error: AlreadyDefined,
            ..
        }) => {}
        other => panic!("a second definition is refused, got {other:?}"),
    }
    // Subscriptions start from a state that refuses (no course yet): each reads.
    accepted(&decider, "geometry", "ada").await;
    accepted(&decider, "geometry", "bob").await;
    assert_eq!(
        refused(&decider, "geometry", "eve").await,
        SubscriptionError::CourseFull { capacity: 2 }
    );
    assert_eq!(definitions(&store, "geometry").await.len(), 1);
    assert_eq!(
        students(&subscriptions(&store, "geometry").await),
        ["ada", "bob"]
    );
}

/// An unread first attempt whose append failed in passing is ridden out as the policy
/// says: with no store retries the failure is the outcome; with retries, an append whose
/// reply was lost (it was stored) is found to be the decision's own, not read as a
/// course defined by someone else.
pub async fn an_unread_first_attempt_rides_out_store_failures_as_the_policy_says<S: Store>(
    store: S,
) {
    let flaky = FlakyStore::new(store.clone());
    let strict = Decider::new(flaky.clone())
        .with_retry_policy(RetryPolicy::default().with_store_retries(0, es_core::Backoff::none()))
        .with_unread_first_attempt(true);
    flaky.fail_appends(1);
    let first = DefineCourse {
        id: "optics".into(),
        capacity: 3,
    };
    match tokio::time::timeout(PATIENCE, strict.execute(&first))
        .await
        .expect("a definition hangs")
    {
        Err(DecisionError::Append { .. }) => {}
        other => panic!("no store retries: the failure is the outcome, got {other:?}"),
    }
    assert!(definitions(&store, "optics").await.is_empty());

    flaky.lose_append_replies(1);
    let patient = decider(flaky.clone()).with_unread_first_attempt(true);
    let decided = tokio::time::timeout(PATIENCE, patient.execute(&first))
        .await
        .expect("a definition hangs")
        .unwrap_or_else(|e| panic!("the stored definition is the decision's own, got {e:?}"));
    assert_eq!(decided.events.len(), 1, "the definition, once");
    assert!(
        !decided.duplicate,
        "stored by this execution, not an earlier one"
    );
    settle(&store, decided.position()).await;
    assert_eq!(definitions(&store, "optics").await.len(), 1);
}

/// Twelve deciders with unread first attempts define one course at once, over three
/// rounds: each round exactly one definition is stored, and the others are refused as
/// defined already (their unread appends were refused, and they read).
pub async fn unread_first_deciders_racing_to_define_a_course_define_it_once<S: Store>(store: S) {
    let overlapping = FlakyStore::new(store.clone());
    overlapping.yield_before_conditional_appends(3);
    for round in 0..ROUNDS {
        let id = format!("defined-once-{round}");
        let start = Arc::new(tokio::sync::Barrier::new(RACERS));
        let racers: Vec<_> = (0..RACERS)
            .map(|racer| {
                let decider = decider(overlapping.clone()).with_unread_first_attempt(true);
                let start = Arc::clone(&start);
                let define = DefineCourse {
                    id: id.clone(),
                    capacity: u32::try_from(racer).unwrap_or(u32::MAX) + 1,
                };
                tokio::spawn(async move {
                    start.wait().await;
                    decider.execute(&define).await
                })
            })
            .collect();
        let mut defined = Vec::new();
        for racer in racers {
            let outcome = tokio::time::timeout(PATIENCE, racer)
                .await
                .unwrap_or_else(|_| panic!("a decider of round {round} hangs"))
                .expect("decider task");
            match outcome {
                Ok(decided) => defined.push(decided),
                Err(DecisionError::Rejected {
                    error: AlreadyDefined,
                    ..
                }) => {}
                Err(other) => panic!("defined or refused as defined, got {other:?}"),
            }
        }
        assert_eq!(defined.len(), 1, "round {round}: one definition wins");
        let head = store.head().await.expect("the log's head");
        settle(&store, head).await;
        assert_eq!(
            definitions(&store, &id).await.len(),
            1,
            "round {round}: the log holds one definition"
        );
    }
    assert!(
        overlapping.conditions_failed() > 0,
        "some unread append was refused (the deciders overlapped)"
    );
}
