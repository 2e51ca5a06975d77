//! Decisions racing on the memory store: many read the same course before any appends,
//! on one runtime and on threads of their own, and a course that keeps changing until the
//! retries run out.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use es_core::{Decided, Decider, DecisionError, RetryPolicy};
use es_memory::MemoryEventStore;

mod decision_domain;
use decision_domain::*;

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
