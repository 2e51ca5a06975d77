//! `read_query`: which events a query selects, after a position, in log order, across
//! streams, archived ones included.

use es_core::{
    AppendCondition, AppendError, EventEnvelope, EventFilter, ExpectedVersion, NewEvent, Position,
    Query, QueryItem, RawEvent,
};

use super::{DcbEvent, assert_condition_failed, ids, put_one, query_now, stream, tag};
use crate::conformance::read_log;
use es_core::Store;

/// Courses, subscriptions and an untagged event, in several streams, each appended on its
/// own and readable. The events, by index:
///
/// | # | stream | event | tags |
/// |---|---|---|---|
/// | 0 | course-c1 | CourseDefined c1 | course:c1 |
/// | 1 | course-c2 | CourseDefined c2 | course:c2 |
/// | 2 | student-s1 | StudentSubscribed s1 c1 | student:s1 course:c1 |
/// | 3 | student-s2 | StudentSubscribed s2 c1 | student:s2 course:c1 |
/// | 4 | student-s1 | StudentSubscribed s1 c2 | student:s1 course:c2 |
/// | 5 | course-c1 | CourseCapacityChanged c1 | course:c1 |
/// | 6 | misc-1 | Labelled (none) | |
/// | 7 | course-c10 | CourseDefined c10 | course:c10 |
async fn enrolments<S: Store>(store: &S) -> Vec<EventEnvelope<DcbEvent>> {
    let defined = |course: &str| DcbEvent::CourseDefined {
        course: course.into(),
        capacity: 2,
    };
    let subscribed = |student: &str, course: &str| DcbEvent::StudentSubscribed {
        student: student.into(),
        course: course.into(),
    };
    let mut events = Vec::new();
    for (category, id, event) in [
        ("course", "c1", defined("c1")),
        ("course", "c2", defined("c2")),
        ("student", "s1", subscribed("s1", "c1")),
        ("student", "s2", subscribed("s2", "c1")),
        ("student", "s1", subscribed("s1", "c2")),
        (
            "course",
            "c1",
            DcbEvent::CourseCapacityChanged {
                course: "c1".into(),
                capacity: 3,
            },
        ),
        ("misc", "1", DcbEvent::Labelled { labels: Vec::new() }),
        ("course", "c10", defined("c10")),
    ] {
        events.push(put_one(store, &stream(category, id), event).await);
    }
    events
}

/// The ids of `all` at `indexes`.
fn pick(all: &[EventEnvelope<DcbEvent>], indexes: &[usize]) -> Vec<uuid::Uuid> {
    indexes.iter().map(|&i| all[i].event_id).collect()
}

/// An item selects events of any of its types (every type if it names none) that carry all
/// of its tags (a tag matches whole: `course:c1` is not `course:c10`, `course:c` is
/// neither); a query selects what any of its items selects, each event once, in log order;
/// [`Query::all`] selects everything and [`Query::none`] nothing. The events come from
/// several streams.
pub async fn query_items_select_by_any_type_and_all_tags<S: Store>(store: S) {
    let all = enrolments(&store).await;
    let item = QueryItem::new;
    let cases: Vec<(&str, Query, &[usize])> = vec![
        (
            "types, any of",
            item()
                .with_types(["CourseDefined", "AccountRegistered"])
                .into(),
            &[0, 1, 7],
        ),
        (
            "two types of one tag",
            item()
                .with_types(["CourseDefined", "CourseCapacityChanged"])
                .with_tag(tag("course:c1"))
                .into(),
            &[0, 5],
        ),
        (
            "one tag, any type, several streams",
            item().with_tag(tag("course:c1")).into(),
            &[0, 2, 3, 5],
        ),
        (
            "tags, all of",
            item()
                .with_tags([tag("student:s1"), tag("course:c1")])
                .into(),
            &[2],
        ),
        (
            "a type and a tag",
            item()
                .with_types(["StudentSubscribed"])
                .with_tag(tag("course:c1"))
                .into(),
            &[2, 3],
        ),
        (
            "a tag's prefix",
            item().with_tag(tag("course:c")).into(),
            &[],
        ),
        (
            "an unknown tag",
            item().with_tag(tag("course:c3")).into(),
            &[],
        ),
        (
            "an unknown type",
            item().with_types(["Nothing"]).into(),
            &[],
        ),
        ("an empty item", item().into(), &[0, 1, 2, 3, 4, 5, 6, 7]),
        ("all", Query::all(), &[0, 1, 2, 3, 4, 5, 6, 7]),
        ("none", Query::none(), &[]),
        (
            "two items",
            Query::from(
                item()
                    .with_types(["CourseDefined"])
                    .with_tag(tag("course:c2")),
            )
            .or(item().with_tag(tag("student:s2"))),
            &[1, 3],
        ),
        (
            "two items selecting one event both",
            Query::from(item().with_tag(tag("course:c1"))).or(item().with_tag(tag("student:s1"))),
            &[0, 2, 3, 4, 5],
        ),
        (
            "an item of a type and one of a tag",
            Query::from(item().with_types(["Labelled"])).or(item().with_tag(tag("course:c10"))),
            &[6, 7],
        ),
    ];
    for (what, query, expected) in cases {
        let found = query_now(&store, &query, Position::START).await;
        assert_eq!(ids(&found), pick(&all, expected), "{what}: {query}");
        assert_eq!(
            found,
            expected.iter().map(|&i| all[i].clone()).collect::<Vec<_>>(),
            "{what}: the envelopes as appended"
        );
    }
    let several = query_now(
        &store,
        &item().with_tag(tag("course:c1")).into(),
        Position::START,
    )
    .await;
    let streams: std::collections::BTreeSet<_> =
        several.iter().map(|e| e.stream_id.to_string()).collect();
    assert_eq!(
        streams,
        ["course-c1", "student-s1", "student-s2"]
            .map(String::from)
            .into(),
        "one query reads several streams"
    );
}

/// `read_query` returns only events after its position, in log order (as `read_all`
/// gives them), and resumes exactly where a previous read ended; typed and raw reads agree.
pub async fn query_reads_after_a_position_in_log_order<S: Store>(store: S) {
    let all = enrolments(&store).await;
    let log = read_log::<S, DcbEvent>(&store, Position::START, EventFilter::all(), all.len()).await;
    assert_eq!(
        ids(&log),
        ids(&all),
        "the log holds the events in append order"
    );
    let whole = query_now(&store, &Query::all(), Position::START).await;
    assert_eq!(ids(&whole), ids(&log), "a query reads in log order");
    assert!(whole.windows(2).all(|w| w[0].position < w[1].position));

    let course = Query::from(QueryItem::new().with_tag(tag("course:c1")));
    // Positions a read delivered: the points a reader may resume from.
    let after = whole[2].position;
    assert_eq!(
        ids(&query_now(&store, &Query::all(), after).await),
        pick(&all, &[3, 4, 5, 6, 7]),
        "everything after #2"
    );
    assert_eq!(
        ids(&query_now(&store, &course, after).await),
        pick(&all, &[3, 5]),
        "course:c1 after #2"
    );
    // Resuming after the last event read gives the rest, in pieces.
    let first = query_now(&store, &course, Position::START).await;
    let mut resumed = Vec::new();
    let mut at = Position::START;
    loop {
        let rest = query_now(&store, &course, at).await;
        let Some(next) = rest.first() else { break };
        at = next.position;
        resumed.push(next.clone());
    }
    assert_eq!(resumed, first, "a query resumed event by event");
    let last = whole.last().unwrap().position;
    assert!(query_now(&store, &Query::all(), last).await.is_empty());

    let raw: Vec<EventEnvelope<RawEvent>> = {
        use futures_util::TryStreamExt as _;
        store
            .read_query::<RawEvent>(&course, Position::START)
            .try_collect()
            .await
            .unwrap()
    };
    assert_eq!(
        raw.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        ids(&first),
        "a raw read selects the same events"
    );
    assert_eq!(raw[0].event.event_type, "CourseDefined");
}

/// Events of archived streams stay in queries (a rule's facts do not vanish with a stream)
/// and count for conditions, though `read_all` leaves them out by default.
pub async fn query_reads_archived_streams<S: Store>(store: S) {
    let all = enrolments(&store).await;
    store
        .archive_stream(&stream("student", "s2"))
        .await
        .unwrap();
    let course = Query::from(QueryItem::new().with_tag(tag("course:c1")));
    assert_eq!(
        ids(&query_now(&store, &course, Position::START).await),
        pick(&all, &[0, 2, 3, 5]),
        "the archived stream's event is still selected"
    );
    let log =
        read_log::<S, DcbEvent>(&store, Position::START, EventFilter::all(), all.len() - 1).await;
    assert!(
        !ids(&log).contains(&all[3].event_id),
        "read_all leaves the archived stream out"
    );

    let target = stream("student", "s9");
    let condition = AppendCondition::new(QueryItem::new().with_tag(tag("student:s2")));
    let result = store
        .append_if(
            &target,
            ExpectedVersion::Any,
            vec![NewEvent::new(DcbEvent::Labelled { labels: Vec::new() })],
            condition.clone(),
        )
        .await;
    assert_condition_failed(&result, &target, &condition, &all[3]);
    assert!(matches!(result, Err(AppendError::ConditionFailed { .. })));
}
