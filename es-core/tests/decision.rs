//! The decider on the memory store: a course with a capacity and students with a limit of
//! courses, decided by two states at once; decisions that change nothing, events a state
//! cannot decode, lost replies, repeats of a command id, and the tags a decision adds.
//! Races are in `decision_races.rs`, the harness in `decision_harness.rs`.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::atomic::Ordering;
use std::time::Duration;

use es_core::{
    Decider, DecisionError, EventStore, ExpectedVersion, NewEvent, RawEvent, StreamId, Version,
};
use es_memory::MemoryEventStore;

mod decision_domain;
use decision_domain::*;

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

/// A repeat under the same command id that decides fewer events than the first run
/// recorded gets all of them back, not only those it decided again.
#[test]
fn a_repeat_that_decides_fewer_events_returns_all_the_first_recorded() {
    block_on(async {
        let store = MemoryEventStore::new();
        let decider = Decider::new(store.clone());
        let context = es_core::CommandContext::new().with_command_id(uuid::Uuid::now_v7());
        let two = InTerm::new("t1", [subscribed("c1", "s1"), subscribed("c2", "s1")]);
        let first = decider.execute_with(&two, context.clone()).await.unwrap();
        assert_eq!(first.events.len(), 2);

        let one = InTerm::new("t1", [subscribed("c1", "s1")]);
        let again = decider.execute_with(&one, context).await.unwrap();
        assert!(again.duplicate);
        assert_eq!(again.events, first.events, "both recorded events");
        assert_eq!(again.position(), first.position());
        assert_eq!(all_events(&store).await.len(), 2, "nothing appended");
    });
}

/// The tags a decision adds ([`Decision::tags`]) are stored with each of its events,
/// beside those the event declares and those of the context, and select them: the next
/// decision in the term reads the first's events.
#[test]
fn a_decision_tags_its_own_events() {
    block_on(async {
        let store = MemoryEventStore::new();
        let decider = Decider::new(store.clone());
        let desk = tag("desk", "d1");
        let context = es_core::CommandContext::new()
            .with_metadata(es_core::Metadata::new().with_tag(desk.clone()));
        let first = decider
            .execute_with(&InTerm::new("t1", [subscribed("c1", "s1")]), context)
            .await
            .unwrap();
        assert_eq!(
            first.events[0].metadata.tags,
            [
                tag("term", "t1"),
                tag("course", "c1"),
                tag("student", "s1"),
                desk
            ]
            .into()
        );
        let read: Vec<_> = all_events(&store).await;
        assert_eq!(read[0].metadata.tags, first.events[0].metadata.tags);

        let second = decider
            .execute(&InTerm::new("t1", [subscribed("c2", "s1")]))
            .await
            .unwrap();
        assert_eq!(second.after, first.position(), "read by the term's tag");
        let other = decider.execute(&InTerm::new("t2", [])).await.unwrap();
        assert_eq!(other.after, None, "another term's events are not selected");
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
        store.hooks.refuse.store(1, Ordering::SeqCst);

        let error = decider
            .execute(&Subscribe::new("c2", "ada"))
            .await
            .unwrap_err();
        // c2 does not exist: rejected. The rejection's check (the condition, with nothing
        // to append) was refused by the store, and the rejection stands as decided.
        assert_eq!(error.rejection(), Some(&SubscriptionError::NoCourse));
        assert_eq!(
            store.hooks.refuse.load(Ordering::SeqCst),
            0,
            "the rejection was checked"
        );
        store.hooks.refuse.store(2, Ordering::SeqCst);

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
