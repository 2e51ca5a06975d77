//! The given/when/then harness for decisions (feature `testing`): what it expects of the
//! decided events and their tags, and the mistakes it catches.

#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, reason = "tests")]

use es_core::testing::DecisionTestExt as _;
use es_core::{Decision, RawEvent, StreamId};

mod decision_domain;
use decision_domain::*;

// ---- The harness ------------------------------------------------------------------------

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

#[test]
fn the_decisions_own_tags_count() {
    InTerm::test()
        .given_no_previous_events()
        .when(InTerm::new("t1", [subscribed("c1", "s1")]))
        // Its query selects by the term's tag alone, which only the decision adds.
        .then_expect_selected_by_query()
        .then_expect_events_tagged([(
            subscribed("c1", "s1"),
            [tag("term", "t1"), tag("course", "c1"), tag("student", "s1")],
        )]);
}

#[test]
fn given_events_the_decision_tagged_are_folded() {
    InTerm::test()
        .given_tagged([tag("term", "t1")], [subscribed("c1", "s1")])
        .given([subscribed("c2", "s1")])
        .when(InTerm::new("t1", []))
        .then_expect_state(|events| assert_eq!(events.1, 1));
}
