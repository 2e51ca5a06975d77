//! `append_if`: the condition is checked with the write, counts only matching events after
//! its position, and leaves the other rules of `append` as they are.

use es_core::{
    AppendCondition, AppendError, Committed, ExpectedVersion, Metadata, NewEvent, Position, Query,
    QueryItem, Version,
};

use super::{
    DcbEvent, assert_condition_failed, ids, put_one, query_now, read_stream, settle, stream, tag,
};
use es_core::Store;

/// The error's message, its sources' messages and its `Debug` form, as one text: what a
/// log line could show of it.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{error} / {error:?}");
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(" / {cause}"));
        source = cause.source();
    }
    text
}

/// Subscribes `student` to `course`.
fn subscribed(student: &str, course: &str) -> DcbEvent {
    DcbEvent::StudentSubscribed {
        student: student.into(),
        course: course.into(),
    }
}

/// What a course decision depends on: the course's events.
fn course_query(course: &str) -> Query {
    QueryItem::new()
        .with_tag(tag(&format!("course:{course}")))
        .into()
}

/// An append whose condition's query selects nothing after its position succeeds, even
/// though matching events exist before it, and stores its events with their tags; a
/// condition on events that never happened succeeds with no position at all.
pub async fn append_if_succeeds_when_nothing_matching_came_after<S: Store>(store: S) {
    let defined = put_one(
        &store,
        &stream("course", "c1"),
        DcbEvent::CourseDefined {
            course: "c1".into(),
            capacity: 2,
        },
    )
    .await;
    let query = course_query("c1");
    let read = query_now(&store, &query, Position::START).await;
    assert_eq!(ids(&read), [defined.event_id]);
    let target = stream("student", "s1");
    let committed = store
        .append_if(
            &target,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(subscribed("s1", "c1"))],
            AppendCondition::new(query.clone()).after(Some(read[0].position)),
        )
        .await
        .expect("nothing matching came after the read");
    assert!(!committed.duplicate);
    assert_eq!(committed.version, Version::new(1));
    assert_eq!(read_stream(&store, &target).await, committed.events);
    settle(&store, &committed).await;
    assert_eq!(
        ids(&query_now(&store, &query, Position::START).await),
        [defined.event_id, committed.events[0].event_id],
        "the appended event is selected by its declared tag"
    );

    let never = AppendCondition::new(QueryItem::new().with_tag(tag("course:c2")));
    store
        .append_if(
            &stream("student", "s2"),
            ExpectedVersion::Any,
            vec![NewEvent::new(subscribed("s2", "c2"))],
            never,
        )
        .await
        .expect("no event ever matched");
}

/// An append fails with [`AppendError::ConditionFailed`] when events its query selects
/// were stored after its position: the error names the first of them (position and type),
/// and nothing of the batch is stored.
pub async fn append_if_fails_naming_the_first_matching_event<S: Store>(store: S) {
    let defined = put_one(
        &store,
        &stream("course", "c1"),
        DcbEvent::CourseDefined {
            course: "c1".into(),
            capacity: 2,
        },
    )
    .await;
    let read = query_now(&store, &course_query("c1"), Position::START).await;
    assert_eq!(ids(&read), [defined.event_id]);
    // Meanwhile, two more events of the course, in other streams.
    let first = put_one(&store, &stream("student", "s2"), subscribed("s2", "c1")).await;
    put_one(
        &store,
        &stream("course", "c1"),
        DcbEvent::CourseCapacityChanged {
            course: "c1".into(),
            capacity: 1,
        },
    )
    .await;

    let target = stream("student", "s1");
    let event = NewEvent::new(subscribed("s1", "c1"));
    let condition = AppendCondition::new(course_query("c1")).after(Some(read[0].position));
    let result = store
        .append_if(
            &target,
            ExpectedVersion::Any,
            vec![event.clone()],
            condition.clone(),
        )
        .await;
    assert_condition_failed(&result, &target, &condition, &first);
    assert!(
        !result.as_ref().unwrap_err().is_conflict(),
        "not a version conflict"
    );
    assert_eq!(
        store.stream_version(&target).await.unwrap(),
        Version::INITIAL,
        "nothing was stored"
    );
    assert!(
        store
            .find_event::<DcbEvent>(event.event_id)
            .await
            .unwrap()
            .is_none()
    );
}

/// With no position the condition counts every matching event ever stored; with the
/// position of the last matching event, none.
pub async fn append_if_without_a_position_counts_every_matching_event<S: Store>(store: S) {
    let claimed = put_one(
        &store,
        &stream("account", "a1"),
        DcbEvent::AccountRegistered {
            account: "a1".into(),
            username: "ada".into(),
        },
    )
    .await;
    let target = stream("account", "a2");
    let event = NewEvent::new(DcbEvent::AccountRegistered {
        account: "a2".into(),
        username: "ada".into(),
    });
    let condition = AppendCondition::new(QueryItem::new().with_tag(tag("username:ada")));
    let result = store
        .append_if(
            &target,
            ExpectedVersion::NoStream,
            vec![event.clone()],
            condition.clone(),
        )
        .await;
    assert_condition_failed(&result, &target, &condition, &claimed);
    assert_eq!(
        store.stream_version(&target).await.unwrap(),
        Version::INITIAL
    );

    let read = query_now(&store, &condition.fail_if_events_match, Position::START).await;
    let after = read.last().map(|e| e.position);
    assert_eq!(after, Some(claimed.position));
    store
        .append_if(
            &target,
            ExpectedVersion::NoStream,
            vec![event],
            condition.after(after),
        )
        .await
        .expect("nothing matched after the last matching event");
}

/// Events after the position that the query does not select do not make the append fail:
/// another type with the right tag, the right type with another tag, only some of an
/// item's tags, no tags at all.
pub async fn append_if_ignores_events_that_do_not_match<S: Store>(store: S) {
    let start = put_one(
        &store,
        &stream("misc", "start"),
        DcbEvent::Labelled { labels: Vec::new() },
    )
    .await;
    let read = query_now(&store, &Query::all(), Position::START).await;
    assert_eq!(ids(&read), [start.event_id]);
    for (category, id, event) in [
        (
            "course",
            "c1",
            DcbEvent::CourseDefined {
                course: "c1".into(),
                capacity: 1,
            },
        ),
        ("student", "s1", subscribed("s1", "c2")),
        ("student", "s2", subscribed("s2", "c1")),
        ("misc", "1", DcbEvent::Labelled { labels: Vec::new() }),
        (
            "misc",
            "2",
            DcbEvent::Labelled {
                labels: vec!["student:s1".into()],
            },
        ),
    ] {
        put_one(&store, &stream(category, id), event).await;
    }
    let query = Query::from(
        QueryItem::new()
            .with_types(["StudentSubscribed"])
            .with_tags([tag("student:s1"), tag("course:c1")]),
    )
    .or(QueryItem::new()
        .with_types(["AccountRegistered"])
        .with_tag(tag("username:ada")));
    store
        .append_if(
            &stream("student", "s1"),
            ExpectedVersion::Any,
            vec![NewEvent::new(subscribed("s1", "c1"))],
            AppendCondition::new(query).after(Some(read[0].position)),
        )
        .await
        .expect("no event after the position matches the query");
}

/// A conditional append still checks the stream's expected version: a passing condition
/// with a stale version is a [`AppendError::Conflict`] that stores nothing, and with the
/// right version it succeeds.
pub async fn append_if_still_checks_the_expected_version<S: Store>(store: S) {
    let target = stream("student", "s1");
    put_one(&store, &target, subscribed("s1", "c1")).await;
    let passing = AppendCondition::new(course_query("c9"));
    let event = NewEvent::new(subscribed("s1", "c2"));
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(Version::new(2)),
    ] {
        match store
            .append_if(&target, expected, vec![event.clone()], passing.clone())
            .await
        {
            Err(AppendError::Conflict {
                stream,
                expected: e,
                actual,
            }) => {
                assert_eq!(
                    (stream, e, actual),
                    (target.clone(), expected, Version::new(1))
                );
            }
            other => panic!("expected a conflict for {expected}, got {other:?}"),
        }
    }
    assert_eq!(
        store.stream_version(&target).await.unwrap(),
        Version::new(1)
    );
    let committed = store
        .append_if(
            &target,
            ExpectedVersion::Exact(Version::new(1)),
            vec![event],
            passing,
        )
        .await
        .expect("the right version and a passing condition");
    assert_eq!(committed.version, Version::new(2));
}

/// When several checks fail at once, every store reports the same one: an archived stream
/// before a version mismatch, a version mismatch before a failed condition.
pub async fn append_if_reports_archive_then_version_then_condition<S: Store>(store: S) {
    let target = stream("student", "s1");
    // Fails: the event stored here matches, and counts with no position given.
    put_one(&store, &target, subscribed("s1", "c1")).await;
    let failing = AppendCondition::new(course_query("c1"));
    let event = NewEvent::new(subscribed("s1", "c2"));
    match store
        .append_if(
            &target,
            ExpectedVersion::NoStream,
            vec![event.clone()],
            failing.clone(),
        )
        .await
    {
        Err(AppendError::Conflict { .. }) => {}
        other => panic!("expected the version conflict first, got {other:?}"),
    }
    store.archive_stream(&target).await.unwrap();
    match store
        .append_if(&target, ExpectedVersion::NoStream, vec![event], failing)
        .await
    {
        Err(AppendError::Archived { .. }) => {}
        other => panic!("expected the archive first, got {other:?}"),
    }
}

/// Repeating a conditional append that succeeded (the same event ids, the same condition)
/// succeeds as a duplicate, returning the stored events and storing nothing, though its
/// own events now match its condition; an append of other events on the same condition
/// fails on them.
pub async fn append_if_repeat_is_a_duplicate<S: Store>(store: S) {
    let target = stream("student", "s1");
    let condition = AppendCondition::new(course_query("c1"));
    let batch = vec![
        NewEvent::new(subscribed("s1", "c1")),
        NewEvent::new(DcbEvent::Labelled { labels: Vec::new() }),
    ];
    let first = store
        .append_if(
            &target,
            ExpectedVersion::NoStream,
            batch.clone(),
            condition.clone(),
        )
        .await
        .expect("no course event yet");
    settle(&store, &first).await;
    let again = store
        .append_if(&target, ExpectedVersion::NoStream, batch, condition.clone())
        .await
        .expect("the repeat succeeds");
    assert!(again.duplicate, "the repeat is reported as a duplicate");
    assert_eq!(
        again.events, first.events,
        "the repeat returns the stored events"
    );
    assert_eq!(again.version, Version::new(2));
    assert_eq!(
        read_stream(&store, &target).await,
        first.events,
        "nothing more stored"
    );

    let other = store
        .append_if(
            &target,
            ExpectedVersion::Any,
            vec![NewEvent::new(subscribed("s1", "c1"))],
            condition.clone(),
        )
        .await;
    assert_condition_failed(&other, &target, &condition, &first.events[0]);
}

/// An empty batch stores nothing but still checks the condition: it fails if a matching
/// event came after the position, and succeeds (with nothing recorded) otherwise.
pub async fn append_if_empty_batch_checks_the_condition<S: Store>(store: S) {
    let defined = put_one(
        &store,
        &stream("course", "c1"),
        DcbEvent::CourseDefined {
            course: "c1".into(),
            capacity: 2,
        },
    )
    .await;
    let target = stream("student", "s1");
    let condition = AppendCondition::new(course_query("c1"));
    let result: Result<Committed<DcbEvent>, AppendError> = store
        .append_if(&target, ExpectedVersion::Any, Vec::new(), condition.clone())
        .await;
    assert_condition_failed(&result, &target, &condition, &defined);
    let read = query_now(&store, &condition.fail_if_events_match, Position::START).await;
    assert_eq!(ids(&read), [defined.event_id]);
    let committed = store
        .append_if::<DcbEvent>(
            &target,
            ExpectedVersion::NoStream,
            Vec::new(),
            condition.after(Some(read[0].position)),
        )
        .await
        .expect("nothing after the position");
    assert!(committed.events.is_empty());
    assert_eq!(committed.version, Version::INITIAL);
    store
        .append_if::<DcbEvent>(
            &target,
            ExpectedVersion::Any,
            Vec::new(),
            AppendCondition::new(Query::none()),
        )
        .await
        .expect("a query selecting nothing never fails");
    assert_eq!(
        store.stream_version(&target).await.unwrap(),
        Version::INITIAL
    );
}

/// A failed condition names the query by its types and tag keys only: the value of a tag
/// (`email:secret@example.com`) is in neither its message, its sources nor its `Debug`
/// form, whether the tag was set in metadata or declared by the event.
pub async fn append_if_failure_shows_no_tag_value<S: Store>(store: S) {
    let email = tag("email:secret@example.com");
    let holder = tag("holder:secret-holder");
    let declaring = put_one(
        &store,
        &stream("misc", "1"),
        DcbEvent::Labelled {
            labels: vec![holder.to_string()],
        },
    )
    .await;
    let setting = store
        .append(
            &stream("misc", "2"),
            ExpectedVersion::Any,
            vec![
                NewEvent::new(DcbEvent::Labelled { labels: Vec::new() })
                    .with_metadata(Metadata::new().with_tag(email.clone())),
            ],
        )
        .await
        .unwrap();
    settle(&store, &setting).await;
    for (query, first) in [
        (
            Query::from(QueryItem::new().with_tag(email.clone())),
            &setting.events[0],
        ),
        (
            Query::from(
                QueryItem::new()
                    .with_types(["Labelled"])
                    .with_tag(holder.clone()),
            )
            .or(QueryItem::new().with_tag(email.clone())),
            &declaring,
        ),
    ] {
        let target = stream("misc", "3");
        let condition = AppendCondition::new(query);
        let result = store
            .append_if(
                &target,
                ExpectedVersion::Any,
                vec![NewEvent::new(DcbEvent::Labelled {
                    labels: vec![email.to_string()],
                })],
                condition.clone(),
            )
            .await;
        assert_condition_failed(&result, &target, &condition, first);
        let text = error_chain(result.as_ref().unwrap_err());
        assert!(!text.contains("secret"), "a tag value shows: {text}");
        assert!(text.contains("email:"), "the tag's key shows: {text}");
    }
}
