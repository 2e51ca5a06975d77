//! Tags, query reads and conditional appends (Dynamic Consistency Boundaries) on the real
//! server: tags read back on every path, queries read from the tags index, and the
//! conditional append race-free under every isolation level and against late commits of
//! older transactions.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;
#[path = "common/role.rs"]
mod role;
use role::Role;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use es_core::error::BoxError;
use es_core::{
    AppendCondition, AppendError, EventEnvelope, EventFilter, EventStore as _, ExpectedVersion,
    Metadata, NewEvent, Position, Query, QueryItem, RawEvent, ReadError, StreamId, Tag, Version,
};
use es_postgres::{PgEventStore, PgInlineProjection};
use futures_util::future::BoxFuture;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, SqlSafeStr as _, SqlStr};
use uuid::Uuid;

/// Taken by the tests that hold a writing transaction open for a while: the horizon and
/// the conditional appends' waits cover the whole database, so one such test's open
/// transaction is what another's appends wait for and name (a CI run saw a test name
/// another's transaction, held open while that one's append waited for the first's). They
/// take turns; the others' short transactions end within a retry.
static HOLDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn tag(key: &str, value: impl std::fmt::Display) -> Tag {
    Tag::pair(key, value).unwrap()
}

fn tagged(event_type: &str, tags: impl IntoIterator<Item = Tag>) -> NewEvent<RawEvent> {
    NewEvent::new(RawEvent::new(event_type, 1, json!({ "n": 1 })))
        .with_metadata(Metadata::new().with_tags(tags))
}

fn stream(category: &str, id: impl std::fmt::Display) -> StreamId {
    StreamId::new(category, &id.to_string()).unwrap()
}

async fn query_all(store: &PgEventStore, query: &Query) -> Vec<EventEnvelope<RawEvent>> {
    tokio::time::timeout(
        Duration::from_secs(60),
        store
            .read_query::<RawEvent>(query, Position::START)
            .try_collect(),
    )
    .await
    .expect("the query read ends")
    .unwrap()
}

/// Waits until every event committed so far is readable: other tests' transactions in the
/// database hold the log's horizon back for moments.
async fn settle(store: &PgEventStore) {
    let Some(head) = store.head().await.unwrap() else {
        return;
    };
    for _ in 0..1_200 {
        if store.readable(head).await.unwrap() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the log never became readable up to {head}");
}

/// An error and its sources, as one text.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// A connection of the test's own, at `application_name`, within its budget share.
async fn own_connection(application_name: &str) -> PgConnection {
    PgConnection::connect_with(&es_testkit::postgres::connect_options(application_name))
        .await
        .unwrap()
}

/// Begins a transaction on `connection` and gives it an id, as a writer's: from then on
/// it is an older transaction that conditional appends and log readers wait for.
async fn begin_writing(connection: &mut PgConnection) {
    sqlx::raw_sql("BEGIN")
        .execute(&mut *connection)
        .await
        .unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *connection)
        .await
        .unwrap();
}

/// What each read path gives back as the tags of an event, by event id.
async fn tags_read(store: &PgEventStore, id: Uuid, stream_id: &StreamId) -> Vec<BTreeSet<Tag>> {
    let mut seen = Vec::new();
    let found = store.find_event::<RawEvent>(id).await.unwrap().unwrap();
    seen.push(found.metadata.tags);
    let in_stream: Vec<EventEnvelope<RawEvent>> = store
        .read_stream(stream_id, Version::new(1))
        .try_collect()
        .await
        .unwrap();
    seen.push(
        in_stream
            .into_iter()
            .find(|e| e.event_id == id)
            .unwrap()
            .metadata
            .tags,
    );
    let in_log: Vec<EventEnvelope<RawEvent>> = store
        .read_all(Position::START, EventFilter::all())
        .try_collect()
        .await
        .unwrap();
    seen.push(
        in_log
            .into_iter()
            .find(|e| e.event_id == id)
            .unwrap()
            .metadata
            .tags,
    );
    let mut live = Box::pin(store.subscribe::<RawEvent>(Position::START, EventFilter::all()));
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), live.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if next.event_id == id {
            seen.push(next.metadata.tags);
            break;
        }
    }
    seen
}

/// Every append path writes the tags, and every read path gives them back as appended;
/// untagged events read back without tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_round_trip_on_every_path() {
    let base = common::fresh_store().await;
    let table = common::create_table(&base, "inline_seen").await;
    let store = PgEventStore::builder(base.pool().clone())
        .schema(base.schema().as_str())
        .unwrap()
        .inline_projection(Arc::new(Recorder::new(&table, "inline")))
        .build();
    let (a, b, c) = (
        tag("course", "c1"),
        tag("student", "s1"),
        Tag::new("vip").unwrap(),
    );
    let mut appended = Vec::new();
    // One event (the single-row statement), a batch (the array statement), each with
    // `Exact` and `Any`; conditional ones, alone and batched; and through the inline
    // projection's transaction.
    let one = stream("note", "one");
    let first = base
        .append(
            &one,
            ExpectedVersion::NoStream,
            vec![tagged("Noted", [a.clone()])],
        )
        .await
        .unwrap();
    appended.push((first.events[0].clone(), one.clone()));
    let next = base
        .append(
            &one,
            ExpectedVersion::Any,
            vec![tagged("Noted", [b.clone(), a.clone()])],
        )
        .await
        .unwrap();
    appended.push((next.events[0].clone(), one.clone()));
    let batch = stream("note", "batch");
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any] {
        let events = vec![
            tagged("Noted", [a.clone(), b.clone(), c.clone()]),
            tagged("Noted", []),
            tagged("Noted", [c.clone()]),
        ];
        let done = base.append(&batch, expected, events).await.unwrap();
        appended.extend(done.events.into_iter().map(|e| (e, batch.clone())));
    }
    let conditional = stream("note", "conditional");
    let never = AppendCondition::new(QueryItem::new().with_tag(tag("nobody", "x")));
    let done = base
        .append_if(
            &conditional,
            ExpectedVersion::NoStream,
            vec![tagged("Noted", [a.clone()])],
            never.clone(),
        )
        .await
        .unwrap();
    appended.push((done.events[0].clone(), conditional.clone()));
    let done = base
        .append_if(
            &conditional,
            ExpectedVersion::Any,
            vec![tagged("Noted", [b.clone()]), tagged("Noted", [])],
            never.clone(),
        )
        .await
        .unwrap();
    appended.extend(done.events.into_iter().map(|e| (e, conditional.clone())));
    let inline = stream("note", "inline");
    let done = store
        .append(
            &inline,
            ExpectedVersion::NoStream,
            vec![tagged("Noted", [c.clone(), a.clone()])],
        )
        .await
        .unwrap();
    appended.push((done.events[0].clone(), inline.clone()));
    let done = store
        .append_if(
            &inline,
            ExpectedVersion::Any,
            vec![tagged("Noted", [b.clone()])],
            never,
        )
        .await
        .unwrap();
    appended.push((done.events[0].clone(), inline.clone()));

    settle(&base).await;
    for (envelope, stream_id) in &appended {
        for (path, read) in ["find_event", "read_stream", "read_all", "subscribe"]
            .iter()
            .zip(tags_read(&base, envelope.event_id, stream_id).await)
        {
            assert_eq!(
                read, envelope.metadata.tags,
                "{path} for {}",
                envelope.event_id
            );
        }
    }
    // A query read gives the tags too, and the untagged events stay NULL in the table.
    let read = query_all(&base, &Query::from(QueryItem::new().with_tag(a.clone()))).await;
    for envelope in &read {
        let appended = appended
            .iter()
            .find(|(e, _)| e.event_id == envelope.event_id)
            .unwrap();
        assert_eq!(envelope.metadata.tags, appended.0.metadata.tags);
    }
    assert_eq!(
        read.len(),
        appended
            .iter()
            .filter(|(e, _)| e.metadata.tags.contains(&a))
            .count()
    );
    let empty: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{}\".events WHERE tags = '{{}}'",
        base.schema()
    )))
    .fetch_one(base.pool())
    .await
    .unwrap();
    assert_eq!(
        empty, 0,
        "no tags are stored as NULL, never as an empty array"
    );
    drop(store);
    common::drop_schema(base).await;
}

/// A tag written by hand that no store would write reads as a typed metadata error naming
/// the stream and version, never as a panic, and without the stored text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_stored_tag_is_a_metadata_error() {
    let store = common::fresh_store().await;
    let cases = [
        "ARRAY['']",
        "ARRAY[NULL]::text[]",
        "ARRAY[E'email:secret\\x01']",
        "ARRAY['email:' || repeat('secret', 60)]",
        "'{{\"course:secret\"}}'::text[]",
    ];
    for (n, tags) in cases.iter().enumerate() {
        let id = Uuid::now_v7();
        let stream_id = format!("bad-{n}");
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{}\".events (stream_id, version, event_id, event_type, schema_version, \
             payload, metadata, tags) VALUES ($1, 1, $2, 'Noted', 1, '{{}}', '{{}}', {tags})",
            store.schema()
        )))
        .bind(&stream_id)
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
        let found = store.find_event::<RawEvent>(id).await;
        match &found {
            Err(ReadError::Metadata {
                stream, version, ..
            }) => {
                assert_eq!(stream.as_str(), stream_id);
                assert_eq!(*version, Version::new(1));
            }
            other => panic!("{tags}: expected a metadata error, got {other:?}"),
        }
        let text = chain(&found.unwrap_err());
        assert!(!text.contains("secret"), "{tags}: {text}");
        let read: Vec<Result<EventEnvelope<RawEvent>, ReadError>> = store
            .read_stream(&StreamId::parse(&stream_id).unwrap(), Version::new(1))
            .collect()
            .await;
        assert!(
            matches!(read.as_slice(), [Err(ReadError::Metadata { .. })]),
            "{tags}: {read:?}"
        );
    }
    common::drop_schema(store).await;
}

/// A query selects by type (any of an item's) and tags (all of an item's), any item
/// counting; in log order, archived streams included, after the position given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_select_by_types_and_tags() {
    let store = common::fresh_store().await;
    let (c1, c2, s1) = (
        tag("course", "c1"),
        tag("course", "c2"),
        tag("student", "s1"),
    );
    let events = [
        ("CourseDefined", vec![c1.clone()]),
        ("CourseDefined", vec![c2.clone()]),
        ("StudentSubscribed", vec![c1.clone(), s1.clone()]),
        ("StudentSubscribed", vec![c2.clone(), s1.clone()]),
        ("Noted", vec![]),
        ("StudentSubscribed", vec![c1.clone()]),
    ];
    let mut ids = Vec::new();
    for (n, (event_type, tags)) in events.iter().enumerate() {
        let done = store
            .append(
                &stream("thing", n),
                ExpectedVersion::NoStream,
                vec![tagged(event_type, tags.clone())],
            )
            .await
            .unwrap();
        ids.push(done.events[0].event_id);
    }
    store.archive_stream(&stream("thing", 0)).await.unwrap();
    settle(&store).await;
    let read = |query: Query| {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            query_all(&store, &query)
                .await
                .into_iter()
                .map(|e| ids.iter().position(|id| *id == e.event_id).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let course1 = QueryItem::new().with_tag(c1.clone());
    assert_eq!(read(course1.clone().into()).await, [0, 2, 5]);
    assert_eq!(
        read(course1.clone().with_types(["StudentSubscribed"]).into()).await,
        [2, 5]
    );
    assert_eq!(
        read(QueryItem::new().with_tags([c1.clone(), s1.clone()]).into()).await,
        [2]
    );
    assert_eq!(
        read(
            Query::from(
                QueryItem::new()
                    .with_types(["CourseDefined"])
                    .with_tag(c2.clone())
            )
            .or(QueryItem::new().with_tag(s1.clone()))
        )
        .await,
        [1, 2, 3]
    );
    assert_eq!(
        read(
            QueryItem::new()
                .with_types(["Noted", "CourseDefined"])
                .into()
        )
        .await,
        [0, 1, 4]
    );
    assert_eq!(read(Query::all()).await, [0, 1, 2, 3, 4, 5]);
    assert_eq!(read(Query::none()).await, Vec::<usize>::new());
    assert_eq!(
        read(QueryItem::new().with_tag(tag("course", "c3")).into()).await,
        Vec::<usize>::new()
    );
    // Untagged-item queries (a scan) and tagged ones agree on where they resume.
    let all = query_all(&store, &Query::all()).await;
    let after: Vec<_> = store
        .read_query::<RawEvent>(&course1.clone().into(), all[2].position)
        .map_ok(|e| e.event_id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(after, [ids[5]]);
    // Small pages read the same.
    let paged = PgEventStore::builder(store.pool().clone())
        .schema(store.schema().as_str())
        .unwrap()
        .page_size(1)
        .build();
    let paged: Vec<_> = query_all(
        &paged,
        &Query::from(course1).or(QueryItem::new().with_types(["Noted"])),
    )
    .await
    .into_iter()
    .map(|e| ids.iter().position(|id| *id == e.event_id).unwrap())
    .collect();
    assert_eq!(paged, [0, 2, 4, 5]);
    common::drop_schema(store).await;
}

/// How a racer fared.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Refused,
}

/// Each racer decides as a user would: reads what the rule depends on, decides, and
/// appends on the condition that nothing it read changed, trying again when it did.
async fn decide(
    store: &PgEventStore,
    query: &Query,
    allowed: impl Fn(&[EventEnvelope<RawEvent>]) -> bool,
    target: &StreamId,
    event: impl Fn() -> NewEvent<RawEvent>,
) -> Outcome {
    for _ in 0..200 {
        let read = query_all(store, query).await;
        if !allowed(&read) {
            return Outcome::Refused;
        }
        let condition = AppendCondition::new(query.clone()).after(read.last().map(|e| e.position));
        match store
            .append_if(target, ExpectedVersion::NoStream, vec![event()], condition)
            .await
        {
            Ok(_) => return Outcome::Accepted,
            Err(AppendError::ConditionFailed { .. }) => {
                tokio::time::sleep(Duration::from_micros(fastrand::u64(100..2_000))).await;
            }
            Err(error) => panic!("a decision failed: {error:?}"),
        }
    }
    panic!("a decision retried 200 times")
}

/// `racers` racers over `rounds` rounds for the last seats of a course of `capacity`, and
/// for one username: exactly `capacity` subscriptions and one registration each round,
/// as the racers report it and as the log holds it.
async fn race(store: &PgEventStore, rounds: usize, racers: usize, capacity: usize) {
    for round in 0..rounds {
        let course = tag("course", format!("{round}-{}", Uuid::now_v7().simple()));
        let query = Query::from(
            QueryItem::new()
                .with_types(["CourseDefined", "StudentSubscribed"])
                .with_tag(course.clone()),
        );
        store
            .append(
                &stream("course", course.value()),
                ExpectedVersion::NoStream,
                vec![
                    NewEvent::new(RawEvent::new(
                        "CourseDefined",
                        1,
                        json!({ "capacity": capacity }),
                    ))
                    .with_metadata(Metadata::new().with_tag(course.clone())),
                ],
            )
            .await
            .unwrap();
        let username = tag(
            "username",
            format!("ada-{round}-{}", Uuid::now_v7().simple()),
        );
        let name_query = Query::from(QueryItem::new().with_tag(username.clone()));
        let mut tasks = Vec::new();
        for racer in 0..racers {
            let (store, query, course) = (store.clone(), query.clone(), course.clone());
            let (name_query, username) = (name_query.clone(), username.clone());
            tasks.push(tokio::spawn(async move {
                let seats = decide(
                    &store,
                    &query,
                    |read| {
                        read.iter()
                            .filter(|e| e.event.event_type == "StudentSubscribed")
                            .count()
                            < capacity
                    },
                    &stream("subscription", format!("{}-{racer}", course.value())),
                    || tagged("StudentSubscribed", [course.clone(), tag("student", racer)]),
                )
                .await;
                let name = decide(
                    &store,
                    &name_query,
                    <[_]>::is_empty,
                    &stream("account", format!("{}-{racer}", username.value())),
                    || tagged("AccountRegistered", [username.clone()]),
                )
                .await;
                (seats, name)
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(
                tokio::time::timeout(Duration::from_secs(120), task)
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        let seats = outcomes
            .iter()
            .filter(|(s, _)| *s == Outcome::Accepted)
            .count();
        let names = outcomes
            .iter()
            .filter(|(_, n)| *n == Outcome::Accepted)
            .count();
        assert_eq!((seats, names), (capacity, 1), "round {round}: {outcomes:?}");
        settle(store).await;
        let stored = query_all(store, &query).await;
        let subscribed = stored
            .iter()
            .filter(|e| e.event.event_type == "StudentSubscribed")
            .count();
        assert_eq!(
            subscribed, capacity,
            "round {round}: the log holds {subscribed}"
        );
        assert_eq!(
            query_all(store, &name_query).await.len(),
            1,
            "round {round}"
        );
    }
}

const ROUNDS: usize = 30;
const RACERS: usize = 16;
const CAPACITY: usize = 3;

/// A store of `RACERS` connections whose sessions default to `isolation`.
async fn store_at(isolation: &str) -> PgEventStore {
    let store = common::fresh_store().await;
    let options: PgConnectOptions = (*store.pool().connect_options())
        .clone()
        .options([("default_transaction_isolation", isolation)]);
    let schema = store.schema().as_str().to_owned();
    // Back to the budget before the racers' pool takes its share.
    drop(store);
    let pool = common::connect_with(options, RACERS as u32).await;
    PgEventStore::builder(pool).schema(&schema).unwrap().build()
}

// Not covered deterministically: the commit window of the announcement skip. A committing
// transaction B is marked committed and leaves the running list before it releases its
// advisory locks, one lock partition at a time; a younger conditional append whose
// snapshot saw B running can, in between, find B's tag lock gone but its marker still held,
// and (without the `pg_xact_status` look after the tries, migration 0008) skip B and miss
// its event. Hitting that window needs a pause inside PostgreSQL's lock release (it was
// reproduced with a debugger); no SQL a test can run stops a backend there. The racers
// below cross the window only by chance (their appends share tags, so a skip is rare), and
// the tests that hold a transaction open hold its locks too, so they never reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racers_for_the_last_seats_at_the_server_default() {
    let store = es_testkit::postgres::fresh_store_sized(RACERS as u32, |builder| builder).await;
    race(&store, ROUNDS, RACERS, CAPACITY).await;
    common::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racers_for_the_last_seats_under_repeatable_read() {
    let store = store_at("repeatable read").await;
    race(&store, ROUNDS, RACERS, CAPACITY).await;
    common::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racers_for_the_last_seats_under_serializable() {
    let store = store_at("serializable").await;
    race(&store, ROUNDS, RACERS, CAPACITY).await;
    common::drop_schema(store).await;
}

/// Opens a transaction on `held` and gives it an id by inserting a tagged event of
/// `stream_id`, as another writer of the database would; returns the event's id.
async fn hold_with_event(
    held: &mut PgConnection,
    store: &PgEventStore,
    stream_id: &str,
    tags: &[Tag],
) -> Uuid {
    sqlx::raw_sql("BEGIN").execute(&mut *held).await.unwrap();
    let id = Uuid::now_v7();
    let tags: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{}\".events (stream_id, version, event_id, event_type, schema_version, \
         payload, metadata, tags) VALUES ($1, 1, $2, 'StudentSubscribed', 1, '{{}}', '{{}}', $3)",
        store.schema()
    )))
    .bind(stream_id)
    .bind(id)
    .bind(tags)
    .execute(&mut *held)
    .await
    .unwrap();
    id
}

/// An event committed late by a transaction older than the decision's append sorts before
/// the append's events, so it counts: the append waits for that transaction, and fails if
/// it commits a selected event, succeeds if it rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_of_an_older_transaction_counts() {
    let _alone = HOLDING.lock().await;
    let store = common::fresh_store().await;
    let _budget = common::hold_connections(1).await;
    let mut held = own_connection("es-test-dcb-late").await;
    for commit in [true, false] {
        let course = tag("course", Uuid::now_v7().simple());
        let query = Query::from(QueryItem::new().with_tag(course.clone()));
        store
            .append(
                &stream("course", course.value()),
                ExpectedVersion::NoStream,
                vec![tagged("CourseDefined", [course.clone()])],
            )
            .await
            .unwrap();
        // Readable once no older transaction of the database (another test's) is open.
        let mut tries = 0;
        while query_all(&store, &query).await.is_empty() {
            tries += 1;
            assert!(tries < 600, "the definition never became readable");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let late = hold_with_event(
            &mut held,
            &store,
            &format!("late-{}", course.value()),
            std::slice::from_ref(&course),
        )
        .await;
        // The decision, made on what it could read: the held event is not among it.
        let decided = query_all(&store, &query).await;
        assert_eq!(decided.len(), 1, "the uncommitted event is not read");
        let append = {
            let (store, course) = (store.clone(), course.clone());
            let condition =
                AppendCondition::new(query.clone()).after(decided.last().map(|e| e.position));
            tokio::spawn(async move {
                store
                    .append_if(
                        &stream("subscription", course.value()),
                        ExpectedVersion::NoStream,
                        vec![tagged("StudentSubscribed", [course.clone()])],
                        condition,
                    )
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !append.is_finished(),
            "the append did not wait for the older transaction"
        );
        let end = if commit { "COMMIT" } else { "ROLLBACK" };
        sqlx::raw_sql(end).execute(&mut held).await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(30), append)
            .await
            .unwrap()
            .unwrap();
        if commit {
            let stored = store.find_event::<RawEvent>(late).await.unwrap().unwrap();
            match outcome {
                Err(AppendError::ConditionFailed {
                    position,
                    event_type,
                    after,
                    ..
                }) => {
                    assert_eq!(position, stored.position);
                    assert_eq!(event_type, "StudentSubscribed");
                    assert_eq!(after, decided.last().map(|e| e.position));
                }
                other => panic!("expected the condition to fail, got {other:?}"),
            }
            assert!(store.find_event::<RawEvent>(late).await.unwrap().is_some());
        } else {
            let committed = outcome.expect("nothing matching was committed");
            assert_eq!(committed.events.len(), 1);
        }
    }
    held.close().await.unwrap();
    common::drop_schema(store).await;
}

/// A transaction left open in the database holds conditional appends up, as it holds log
/// readers: the append gives up before the reply deadline with a transient error that
/// names the session, having stored nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_older_transaction_is_named_when_the_wait_ends() {
    let _alone = HOLDING.lock().await;
    let base = common::fresh_store().await;
    let store = PgEventStore::builder(base.pool().clone())
        .schema(base.schema().as_str())
        .unwrap()
        .reply_timeout(Some(Duration::from_secs(2)))
        .build();
    let _budget = common::hold_connections(1).await;
    let mut held = own_connection("es-test-dcb-idle").await;
    begin_writing(&mut held).await;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut held)
        .await
        .unwrap();
    let target = stream("subscription", "held");
    // The oldest open transaction is named: another test's, older than this one, may be
    // named instead while it lasts; try again until it ends.
    let mut tries = 0;
    let outcome = loop {
        tries += 1;
        let outcome = tokio::time::timeout(
            Duration::from_secs(30),
            store.append_if(
                &target,
                ExpectedVersion::NoStream,
                vec![tagged("StudentSubscribed", [tag("course", "held")])],
                AppendCondition::new(QueryItem::new().with_tag(tag("course", "held"))),
            ),
        )
        .await
        .unwrap();
        let another = matches!(&outcome, Err(AppendError::Store { source, .. })
            if !chain(source).contains(&format!("backend {pid}")));
        if !another || tries >= 10 {
            break outcome;
        }
    };
    match outcome {
        Err(AppendError::Store { source, .. }) => {
            assert!(source.is_transient(), "{source:?}");
            let text = chain(&source);
            assert!(text.contains(&format!("backend {pid}")), "{text}");
            assert!(text.contains("es-test-dcb-idle"), "{text}");
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
    sqlx::raw_sql("ROLLBACK").execute(&mut held).await.unwrap();
    assert_eq!(
        base.stream_version(&target).await.unwrap(),
        Version::INITIAL
    );
    held.close().await.unwrap();
    drop(store);
    common::drop_schema(base).await;
}

/// A conditional append announces its batch (its tags, then the marker of its id) only
/// when the batch is all its transaction wrote: one that had written before the call
/// would have younger appends skip it without seeing those writes, so it announces
/// nothing and is waited for like any other writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_wrote_before_does_not_announce() {
    let _alone = HOLDING.lock().await;
    let store = common::fresh_store().await;
    let _budget = common::hold_connections(1).await;
    let mut session = own_connection("es-test-dcb-wrote-before").await;
    let append_if = AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{}\".es_append_if($1, NULL, ARRAY[$2::uuid], ARRAY['Noted'], \
         ARRAY[1], ARRAY['{{}}'::jsonb], ARRAY[NULL::uuid], ARRAY[NULL::uuid], ARRAY[NULL::text], \
         ARRAY['{{}}'::jsonb], ARRAY[NULL::text], ARRAY['k:v'], '[{{\"tags\": [\"k:w\"]}}]', \
         ARRAY['k:w'], '0'::xid8, 0, ARRAY[0.001::float8], 5)",
        store.schema()
    ))
    .into_sql_str();
    // (the batch's tag's shared lock, markers) this session holds; the stream's own
    // shared lock (migration 0003) is a bigint key too, so the tag's is matched exactly,
    // and the markers of other transactions that the checks try are taken shared.
    let announced = "SELECT count(*) FILTER (WHERE objsubid = 1 AND mode = 'ShareLock' \
                         AND classid = oid((k >> 32) & 4294967295) \
                         AND objid = oid(k & 4294967295)), \
                     count(*) FILTER (WHERE objsubid = 2 AND mode = 'ExclusiveLock') \
                     FROM pg_locks, hashtextextended($1, 1) AS k \
                     WHERE pid = pg_backend_pid() AND locktype = 'advisory'";
    let tag_key = format!("\"{}\" tag k:v", store.schema().as_str());
    for wrote_before in [false, true] {
        sqlx::raw_sql("BEGIN").execute(&mut session).await.unwrap();
        if wrote_before {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO \"{}\".events (stream_id, version, event_id, event_type, \
                 schema_version, payload, metadata) VALUES ('other-1', 1, $1, 'Noted', 1, \
                 '{{}}', '{{}}')",
                store.schema()
            )))
            .bind(Uuid::now_v7())
            .execute(&mut session)
            .await
            .unwrap();
        }
        let inserted: i64 = sqlx::query_scalar(append_if.clone())
            .bind(format!("mine-{wrote_before}"))
            .bind(Uuid::now_v7())
            .fetch_one(&mut session)
            .await
            .unwrap();
        assert_eq!(inserted, 1);
        let (tags, markers): (i64, i64) = sqlx::query_as(announced)
            .bind(&tag_key)
            .fetch_one(&mut session)
            .await
            .unwrap();
        if wrote_before {
            assert_eq!((tags, markers), (0, 0), "announced after an earlier write");
        } else {
            assert_eq!((tags, markers), (1, 1), "the batch alone is announced");
        }
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut session)
            .await
            .unwrap();
    }
    session.close().await.unwrap();
    common::drop_schema(store).await;
}

/// A conditional append announces its tags with shared locks that a younger check of
/// those tags holds exclusively until it ends: that wait is bounded by the wait limit too,
/// and ends with the same transient error, naming the backend that held the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_announcement_waits_no_longer_than_the_limit() {
    let _alone = HOLDING.lock().await;
    let base = common::fresh_store().await;
    // The server gives up the wait after three quarters of the reply deadline (6 s); the
    // quarter left must cover the rest of the call on a loaded machine, or the client's
    // own deadline ends it first, without the server's word on who held the lock.
    let store = PgEventStore::builder(base.pool().clone())
        .schema(base.schema().as_str())
        .unwrap()
        .reply_timeout(Some(Duration::from_secs(8)))
        .build();
    let _budget = common::hold_connections(1).await;
    let mut held = own_connection("es-test-dcb-announce").await;
    sqlx::raw_sql("BEGIN").execute(&mut held).await.unwrap();
    // What a check of the tag holds until its transaction ends (migration 0008).
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))")
        .bind(format!(
            "\"{}\" tag course:announced",
            base.schema().as_str()
        ))
        .execute(&mut held)
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut held)
        .await
        .unwrap();
    let target = stream("subscription", "announced");
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        store.append_if(
            &target,
            ExpectedVersion::NoStream,
            vec![tagged("StudentSubscribed", [tag("course", "announced")])],
            AppendCondition::new(QueryItem::new().with_tag(tag("course", "other"))),
        ),
    )
    .await
    .expect("the announcement's wait ends");
    match outcome {
        Err(AppendError::Store { source, .. }) => {
            assert!(source.is_transient(), "{source:?}");
            let text = chain(&source);
            assert!(text.contains(&format!("backend {pid}")), "{text}");
            assert!(text.contains("holds the lock of a tag"), "{text}");
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
    sqlx::raw_sql("ROLLBACK").execute(&mut held).await.unwrap();
    assert_eq!(
        base.stream_version(&target).await.unwrap(),
        Version::INITIAL
    );
    // With the lock released, the same append goes through.
    store
        .append_if(
            &target,
            ExpectedVersion::NoStream,
            vec![tagged("StudentSubscribed", [tag("course", "announced")])],
            AppendCondition::new(QueryItem::new().with_tag(tag("course", "other"))),
        )
        .await
        .unwrap();
    held.close().await.unwrap();
    drop(store);
    common::drop_schema(base).await;
}

/// An older transaction that waits for a lock the conditional append holds (an insert into
/// the same stream) cannot end before the append does: the append gives way and tries
/// again after it, instead of both waiting until a deadline.
///
/// The quiet case: the older transaction takes its id first and nothing else this test
/// does commits before the append looks, so the older id is at or above the append's
/// snapshot's xmax, where `pg_snapshot_xip` does not list it (the give-way check once
/// started from that list and missed it). Other sessions on the server may commit in
/// between and put it back in the list; the test passes either way with the fix, and
/// fails without it whenever the server is quiet. The store's wait limit (three quarters
/// of the two-minute reply deadline) is far beyond the held insert's timeout: an append
/// that waited to the limit instead of giving way fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_gives_way_to_an_older_transaction_waiting_for_it() {
    let _alone = HOLDING.lock().await;
    let base = common::fresh_store().await;
    let store = PgEventStore::builder(base.pool().clone())
        .schema(base.schema().as_str())
        .unwrap()
        .reply_timeout(Some(Duration::from_secs(120)))
        .build();
    let _budget = common::hold_connections(1).await;
    let mut held = own_connection("es-test-dcb-cycle").await;
    sqlx::raw_sql("BEGIN").execute(&mut held).await.unwrap();
    let held_id: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut held)
        .await
        .unwrap();
    let target = stream("shared", "1");
    let append = {
        let (store, target) = (store.clone(), target.clone());
        tokio::spawn(async move {
            store
                .append_if(
                    &target,
                    ExpectedVersion::Any,
                    vec![tagged("Noted", [tag("k", "v")])],
                    AppendCondition::new(QueryItem::new().with_tag(tag("k", "other"))),
                )
                .await
        })
    };
    // The append inserted version 1 and waits for the held (older) transaction...
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quiet: bool =
        sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot()) <= $1::text::xid8")
            .bind(&held_id)
            .fetch_one(&mut held)
            .await
            .unwrap();
    eprintln!("the held transaction was at or above xmax (the quiet case): {quiet}");
    // ...which now inserts version 1 too, and waits for the append's row.
    let insert = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{}\".events (stream_id, version, event_id, event_type, schema_version, \
         payload, metadata) VALUES ('shared-1', 1, $1, 'Noted', 1, '{{}}', '{{}}')",
        store.schema()
    )))
    .bind(Uuid::now_v7())
    .execute(&mut held);
    tokio::time::timeout(Duration::from_secs(20), insert)
        .await
        .expect("the append gave way (ESYL0), so the held insert went through")
        .unwrap();
    sqlx::raw_sql("COMMIT").execute(&mut held).await.unwrap();
    let committed = tokio::time::timeout(Duration::from_secs(30), append)
        .await
        .unwrap()
        .unwrap()
        .expect("the append succeeds after the older transaction");
    assert_eq!(committed.version, Version::new(2));
    held.close().await.unwrap();
    drop(store);
    common::drop_schema(base).await;
}

/// An exact repeat of a conditional append succeeds as a duplicate without its condition
/// (its own events would fail it); an empty batch checks the condition and the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_and_empty_batches() {
    let store = common::fresh_store().await;
    let name = tag("username", "ada");
    let condition = AppendCondition::new(QueryItem::new().with_tag(name.clone()));
    let target = stream("account", "ada");
    let event = tagged("AccountRegistered", [name.clone()]);
    let first = store
        .append_if(
            &target,
            ExpectedVersion::NoStream,
            vec![event.clone()],
            condition.clone(),
        )
        .await
        .unwrap();
    let again = store
        .append_if(
            &target,
            ExpectedVersion::NoStream,
            vec![event],
            condition.clone(),
        )
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.events[0].event_id, first.events[0].event_id);
    // Another registration of the name fails, naming the first.
    match store
        .append_if(
            &stream("account", "eve"),
            ExpectedVersion::NoStream,
            vec![tagged("AccountRegistered", [name.clone()])],
            condition.clone(),
        )
        .await
    {
        Err(AppendError::ConditionFailed {
            position,
            event_type,
            query,
            ..
        }) => {
            assert_eq!(position, first.events[0].position);
            assert_eq!(event_type, "AccountRegistered");
            assert!(!query.contains("ada"), "{query}");
        }
        other => panic!("expected the condition to fail, got {other:?}"),
    }
    // An empty batch: the condition, then the version.
    assert!(matches!(
        store
            .append_if::<RawEvent>(&target, ExpectedVersion::Any, vec![], condition.clone())
            .await,
        Err(AppendError::ConditionFailed { .. })
    ));
    let after_it = condition.clone().after(Some(first.events[0].position));
    let nothing = store
        .append_if::<RawEvent>(
            &target,
            ExpectedVersion::Exact(Version::new(1)),
            vec![],
            after_it.clone(),
        )
        .await
        .unwrap();
    assert_eq!(nothing.version, Version::new(1));
    assert!(matches!(
        store
            .append_if::<RawEvent>(&target, ExpectedVersion::NoStream, vec![], after_it.clone())
            .await,
        Err(AppendError::Conflict { .. })
    ));
    // A stale version with a passing condition is a conflict; `Query::none` never fails.
    assert!(matches!(
        store
            .append_if(
                &target,
                ExpectedVersion::NoStream,
                vec![tagged("Noted", [])],
                after_it
            )
            .await,
        Err(AppendError::Conflict { .. })
    ));
    store
        .append_if(
            &target,
            ExpectedVersion::Any,
            vec![tagged("Noted", [name])],
            AppendCondition::new(Query::none()),
        )
        .await
        .unwrap();
    common::drop_schema(store).await;
}

/// Records the ids of the events it sees into a table, inside the append's transaction.
struct Recorder {
    name: &'static str,
    insert: SqlStr,
}

impl Recorder {
    fn new(table: &str, name: &'static str) -> Self {
        Self {
            name,
            insert: AssertSqlSafe(format!("INSERT INTO {table} (event_id) VALUES ($1)"))
                .into_sql_str(),
        }
    }
}

impl PgInlineProjection for Recorder {
    fn name(&self) -> &str {
        self.name
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope<RawEvent>],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            for event in events {
                sqlx::query(self.insert.clone())
                    .bind(event.event_id)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(())
        })
    }
}

/// With an inline projection, the conditional append runs in one transaction with the
/// projection's work: a failed condition leaves the read model unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_projections_see_only_appends_whose_condition_held() {
    let base = common::fresh_store().await;
    let table = common::create_table(&base, "recorded").await;
    let store = PgEventStore::builder(base.pool().clone())
        .schema(base.schema().as_str())
        .unwrap()
        .inline_projection(Arc::new(Recorder::new(&table, "recorder")))
        .build();
    let name = tag("username", "bob");
    let condition = AppendCondition::new(QueryItem::new().with_tag(name.clone()));
    store
        .append_if(
            &stream("account", "bob"),
            ExpectedVersion::NoStream,
            vec![tagged("AccountRegistered", [name.clone()])],
            condition.clone(),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .append_if(
                &stream("account", "bob2"),
                ExpectedVersion::NoStream,
                vec![tagged("AccountRegistered", [name])],
                condition
            )
            .await,
        Err(AppendError::ConditionFailed { .. })
    ));
    assert_eq!(common::count(&base, &table).await, 1);
    drop(store);
    common::drop_schema(base).await;
}

/// An inline projection that appends an event of its own, in SQL, beside the batch.
struct Smuggler {
    insert: SqlStr,
}

impl PgInlineProjection for Smuggler {
    fn name(&self) -> &str {
        "smuggler"
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        _: &'a [EventEnvelope<RawEvent>],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            sqlx::query(self.insert.clone())
                .bind(Uuid::now_v7())
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
    }
}

/// A conditional append announces its batch's tags only; an inline projection that
/// inserted events besides would hide them from younger appends on their tags, so the
/// append is refused whole: neither the batch nor the projection's event is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_projection_that_appends_events_fails_a_conditional_append() {
    let base = common::fresh_store().await;
    let insert = AssertSqlSafe(format!(
        "INSERT INTO {}.events (stream_id, version, event_id, event_type, schema_version, \
             payload, metadata, tags) \
         VALUES ('smuggled-1', 1, $1, 'Smuggled', 1, '{{}}', '{{}}', ARRAY['course:c1'])",
        base.schema().as_str()
    ))
    .into_sql_str();
    let store = PgEventStore::builder(base.pool().clone())
        .schema(base.schema().as_str())
        .unwrap()
        .inline_projection(Arc::new(Smuggler { insert }))
        .build();
    let course = tag("course", "c1");
    let refused = store
        .append_if(
            &stream("student", "s1"),
            ExpectedVersion::NoStream,
            vec![tagged("StudentSubscribed", [course.clone()])],
            AppendCondition::new(QueryItem::new().with_tag(course)),
        )
        .await;
    match refused {
        Err(AppendError::Store { source, .. }) => {
            assert!(
                source.to_string().contains("inline projection")
                    || format!("{source:?}").contains("must not append events"),
                "{source:?}"
            );
        }
        other => panic!("expected the append refused, got {other:?}"),
    }
    let stored: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {}.events",
        base.schema().as_str()
    )))
    .fetch_one(base.pool())
    .await
    .unwrap();
    assert_eq!(stored, 0, "nothing may be stored");
    drop(store);
    common::drop_schema(base).await;
}

/// The number of scans of the events' index `index`, as the server counts them once the
/// sessions that made them have ended.
async fn index_scans(store: &PgEventStore, index: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(idx_scan), 0)::int8 FROM pg_stat_user_indexes \
         WHERE schemaname = $1 AND indexrelname = $2",
    )
    .bind(store.schema().as_str())
    .bind(index)
    .fetch_one(store.pool())
    .await
    .unwrap()
}

/// The number of scans of the tags index (see [`index_scans`]).
async fn tag_index_scans(store: &PgEventStore) -> i64 {
    index_scans(store, "events_tags_idx").await
}

/// Waits until the tags index was scanned more than `before` times (a session's counts
/// reach the server's statistics when it ends).
async fn wait_for_scans(store: &PgEventStore, before: i64, what: &str) {
    for _ in 0..150 {
        if tag_index_scans(store).await > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not use the tags index");
}

/// The `application_name` of [`one_off`]'s sessions.
const ONE_OFF: &str = "es-test-dcb-index";

/// A store on `base`'s schema with a pool of its own, to be closed (which flushes its
/// sessions' statistics).
async fn one_off(base: &PgEventStore) -> PgEventStore {
    PgEventStore::builder(common::connect(ONE_OFF, 2).await)
        .schema(base.schema().as_str())
        .unwrap()
        .build()
}

/// Over many tagged events, both a query read and a conditional append find the events
/// through the GIN index on tags, and the conditional append through it alone: a check
/// that also scans the primary key from its position on reads the whole log after it, and
/// a decision's cost grows with the log (as it did before migration 0009).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_reads_and_conditions_use_the_tags_index() {
    let store = common::fresh_store().await;
    // Loaded and settled through a pool of its own, closed before the counts are read: a
    // session reports its index scans up to a second late, at the end of some later
    // statement, so the settling read of the log's head (which scans the primary key)
    // would otherwise show up in the middle of the measurement.
    let loader = one_off(&store).await;
    for batch in 0..40 {
        let events = (0..100)
            .map(|n| {
                tagged(
                    "StudentSubscribed",
                    [tag("course", batch * 100 + n), tag("student", n)],
                )
            })
            .collect();
        loader
            .append(&stream("bulk", batch), ExpectedVersion::NoStream, events)
            .await
            .unwrap();
    }
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ANALYZE \"{}\".events",
        store.schema()
    )))
    .execute(loader.pool())
    .await
    .unwrap();
    let query = Query::from(QueryItem::new().with_tag(tag("course", 1234)));
    settle(&loader).await;
    loader.pool().close().await;
    // A session's counts are in once it has left pg_stat_activity (the server reports
    // them before it gives up its place there).
    common::until_none(
        &store,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        ONE_OFF,
        "the loader's sessions end",
    )
    .await;

    let reader = one_off(&store).await;
    let before = tag_index_scans(&store).await;
    assert_eq!(query_all(&reader, &query).await.len(), 1);
    reader.pool().close().await;
    wait_for_scans(&store, before, "a query read").await;

    let writer = one_off(&store).await;
    let before = tag_index_scans(&store).await;
    let primary_before = index_scans(&store, "events_pkey").await;
    assert!(matches!(
        writer
            .append_if(
                &stream("late", 1),
                ExpectedVersion::NoStream,
                vec![tagged("StudentSubscribed", [tag("course", 1234)])],
                AppendCondition::new(query)
            )
            .await,
        Err(AppendError::ConditionFailed { .. })
    ));
    writer.pool().close().await;
    wait_for_scans(&store, before, "a conditional append").await;
    assert_eq!(
        index_scans(&store, "events_pkey").await,
        primary_before,
        "the conditional append scanned the primary key"
    );
    common::drop_schema(store).await;
}

/// What the application role does with tags: appends tagged events, appends on a
/// condition (and is refused one), reads by query; it still cannot forge the columns the
/// server assigns, tags or not.
async fn application_role_uses_tags(app: &PgEventStore) {
    app.verify()
        .await
        .expect("verify passes for the granted role");
    let name = tag("username", "carol");
    let condition = AppendCondition::new(QueryItem::new().with_tag(name.clone()));
    app.append(
        &stream("note", "1"),
        ExpectedVersion::NoStream,
        vec![tagged("Noted", [tag("k", 1)])],
    )
    .await
    .unwrap();
    let registered = app
        .append_if(
            &stream("account", "carol"),
            ExpectedVersion::NoStream,
            vec![tagged("AccountRegistered", [name.clone()])],
            condition.clone(),
        )
        .await
        .unwrap();
    assert!(matches!(
        app.append_if(
            &stream("account", "carol2"),
            ExpectedVersion::NoStream,
            vec![tagged("AccountRegistered", [name.clone()])],
            condition.clone()
        )
        .await,
        Err(AppendError::ConditionFailed { .. })
    ));
    // Waiting for older transactions needs nothing more: held by one, it still decides.
    settle(app).await;
    let read = query_all(app, &Query::from(QueryItem::new().with_tag(name))).await;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].event_id, registered.events[0].event_id);
    let columns =
        "stream_id, version, event_id, event_type, schema_version, payload, metadata, tags";
    let values = "'note-2', 1, gen_random_uuid(), 'Forged', 1, '{}', '{}', ARRAY['username:carol']";
    for (what, sql) in [
        (
            "a chosen position",
            format!(
                "INSERT INTO {{s}}.events (position, {columns}) OVERRIDING SYSTEM VALUE VALUES (1, {values})"
            ),
        ),
        (
            "a transaction id from the future",
            format!(
                "INSERT INTO {{s}}.events (transaction_id, {columns}) VALUES ('999999999999'::xid8, {values})"
            ),
        ),
        (
            "a recorded time of 2001",
            format!(
                "INSERT INTO {{s}}.events (recorded_at, {columns}) VALUES ('2001-01-01T00:00:00Z', {values})"
            ),
        ),
        (
            "a rewrite of tags",
            "UPDATE {s}.events SET tags = NULL".to_owned(),
        ),
        (
            "dropping the index",
            "DROP INDEX {s}.events_tags_idx".to_owned(),
        ),
    ] {
        let sql = sql.replace("{s}", &format!("\"{}\"", app.schema()));
        match sqlx::raw_sql(AssertSqlSafe(sql)).execute(app.pool()).await {
            Err(sqlx::Error::Database(error))
                if matches!(error.code().as_deref(), Some("42501")) => {}
            other => panic!("{what}: expected a refusal for lack of privilege, got {other:?}"),
        }
    }
}

/// The granted application role appends tagged events and on conditions, and reads by
/// query, with no privilege beyond the grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_role_appends_on_conditions() {
    let owner = common::fresh_store().await;
    let role = Role::create(&owner).await;
    owner.grant_application_role(&role.name).await.unwrap();
    let app = role.store(&owner);
    application_role_uses_tags(&app).await;
    app.pool().close().await;
    role.drop_with(owner).await;
}

/// A role granted before migration 0008 may write the tags column and make conditional
/// appends after it: the migration grants both to the roles that may append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_granted_before_the_tags_migration_uses_tags_after_it() {
    let owner = common::fresh_store().await;
    let role = Role::create(&owner).await;
    owner.grant_application_role(&role.name).await.unwrap();
    // Put the schema back as migration 0007 left it, grants included.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP FUNCTION \"{0}\".es_append_if; ALTER TABLE \"{0}\".events DROP COLUMN tags; \
         DELETE FROM \"{0}\".es_migrations WHERE version = 8",
        owner.schema()
    )))
    .execute(owner.pool())
    .await
    .unwrap();
    owner.migrate().await.unwrap();
    let app = role.store(&owner);
    application_role_uses_tags(&app).await;
    app.pool().close().await;
    role.drop_with(owner).await;
}

/// Holds the append's transaction open in its inline projection until released: an
/// older conditional append still running.
struct Blocker {
    entered: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl PgInlineProjection for Blocker {
    fn name(&self) -> &str {
        "blocker"
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all().with_categories(["blocker"])
    }

    fn handle<'a>(
        &'a self,
        _tx: &'a mut PgConnection,
        _events: &'a [EventEnvelope<RawEvent>],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.entered.notify_one();
            self.release.notified().await;
            Ok(())
        })
    }
}

/// A conditional append waits for an older conditional append whose events may match its
/// query (a tag in common), and fails when that one commits a selected event; one whose
/// announced tags hold none of the query's it need not wait for, and commits while that
/// one is still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_appends_wait_only_for_older_ones_that_may_match() {
    let _alone = HOLDING.lock().await;
    let base = common::fresh_store().await;
    let (entered, release) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let blocking = PgEventStore::builder(base.pool().clone())
        .schema(base.schema().as_str())
        .unwrap()
        .inline_projection(Arc::new(Blocker {
            entered: Arc::clone(&entered),
            release: Arc::clone(&release),
        }))
        .build();
    let (x, y) = (tag("course", "x"), tag("course", "y"));
    let older = {
        let (blocking, x) = (blocking.clone(), x.clone());
        tokio::spawn(async move {
            blocking
                .append_if(
                    &stream("blocker", 1),
                    ExpectedVersion::NoStream,
                    vec![tagged("StudentSubscribed", [x.clone()])],
                    AppendCondition::new(QueryItem::new().with_tag(tag("course", "none"))),
                )
                .await
        })
    };
    tokio::time::timeout(Duration::from_secs(30), entered.notified())
        .await
        .expect("the older append runs its projection");
    // Disjoint: commits while the older one is open.
    let disjoint = tokio::time::timeout(
        Duration::from_secs(20),
        base.append_if(
            &stream("subscription", "y"),
            ExpectedVersion::NoStream,
            vec![tagged("StudentSubscribed", [y.clone()])],
            AppendCondition::new(QueryItem::new().with_tag(y)),
        ),
    )
    .await
    .expect("a disjoint conditional append does not wait for the older one");
    disjoint.unwrap();
    // Overlapping: waits, then sees the older one's event.
    let overlapping = {
        let (base, x) = (base.clone(), x.clone());
        tokio::spawn(async move {
            base.append_if(
                &stream("subscription", "x"),
                ExpectedVersion::NoStream,
                vec![tagged("StudentSubscribed", [x.clone()])],
                AppendCondition::new(QueryItem::new().with_tag(x)),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !overlapping.is_finished(),
        "the overlapping append did not wait"
    );
    release.notify_one();
    let committed = tokio::time::timeout(Duration::from_secs(30), older)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(30), overlapping)
        .await
        .unwrap()
        .unwrap()
    {
        Err(AppendError::ConditionFailed { position, .. }) => {
            assert_eq!(position, committed.events[0].position)
        }
        other => panic!("expected the condition to fail, got {other:?}"),
    }
    drop(blocking);
    common::drop_schema(base).await;
}

/// Whether a course was opened, as a decision's state.
struct CourseOpened {
    course: Tag,
    opened: bool,
}

impl es_core::DecisionState for CourseOpened {
    type Event = RawEvent;

    fn query(&self) -> Query {
        QueryItem::new()
            .with_types(["CourseOpened"])
            .with_tag(self.course.clone())
            .into()
    }

    fn apply(&mut self, _: &RawEvent) {
        self.opened = true;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the course is not open")]
struct NotOpen;

/// Subscribes a student to a course, refused while the course is not open.
struct SubscribeTo(Tag);

impl es_core::Decision for SubscribeTo {
    type State = CourseOpened;
    type Event = RawEvent;
    type Error = NotOpen;

    fn state(&self) -> CourseOpened {
        CourseOpened {
            course: self.0.clone(),
            opened: false,
        }
    }

    fn stream(&self) -> StreamId {
        stream("student", Uuid::now_v7().simple())
    }

    fn decide(&self, state: &CourseOpened) -> Result<Vec<RawEvent>, NotOpen> {
        if !state.opened {
            return Err(NotOpen);
        }
        Ok(vec![RawEvent::new("StudentSubscribed", 1, json!({}))])
    }
}

/// A decision made right after the caller's own append does not refuse on a read that
/// missed it: the log's end is held back while an older transaction is open, so the read
/// does not see the course opened, and a rejection resting on that read is checked (the
/// condition, with nothing to append) before it is given; the check finds the committed
/// event, the decider waits until the log delivers it (the older transaction ends), and
/// the decision is made again, on a read that sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_is_not_given_on_a_read_that_missed_an_event() {
    let _alone = HOLDING.lock().await;
    let store = common::fresh_store().await;
    let _budget = common::hold_connections(1).await;
    let mut older = own_connection("es-test-dcb-older").await;
    begin_writing(&mut older).await;
    let course = tag("course", Uuid::now_v7().simple());
    store
        .append(
            &stream("course", Uuid::now_v7().simple()),
            ExpectedVersion::NoStream,
            vec![tagged("CourseOpened", [course.clone()])],
        )
        .await
        .unwrap();
    assert!(
        query_all(&store, &QueryItem::new().with_tag(course.clone()).into())
            .await
            .is_empty(),
        "the read misses the event while the older transaction is open"
    );
    let ends = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::raw_sql("COMMIT").execute(&mut older).await.unwrap();
        older.close().await.unwrap();
    });
    let decided = es_core::Decider::new(store.clone())
        .execute(&SubscribeTo(course))
        .await
        .expect("the decision sees the course opened");
    assert_eq!(decided.events.len(), 1);
    assert!(decided.attempts >= 2, "decided again after the check");
    ends.await.unwrap();
    common::drop_schema(store).await;
}

/// A conditional append that waits for its stream's lock (an archive holds it while it
/// looks at the stream) waits without a transaction id (migration 0012 takes the id just
/// before the insert, once it holds that lock): with one, it would hold back log readers
/// and younger conditional appends for as long as the archive takes. Once the lock is
/// released, the append goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_waiting_for_its_streams_lock_holds_no_transaction_id() {
    let store = common::fresh_store().await;
    let seat = stream("seat", Uuid::now_v7().simple());
    let course = tag("course", Uuid::now_v7().simple());
    let _budget = common::hold_connections(1).await;
    let mut archive = own_connection("archive-in-progress").await;
    sqlx::raw_sql("BEGIN").execute(&mut archive).await.unwrap();
    let stream_key = format!("\"{}\".{}", store.schema().as_str(), seat.as_str());
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(&stream_key)
        .execute(&mut archive)
        .await
        .unwrap();

    let waiting = {
        let (store, seat, course) = (store.clone(), seat.clone(), course.clone());
        tokio::spawn(async move {
            let query: Query = QueryItem::new().with_tag(course.clone()).into();
            let condition = AppendCondition::new(query);
            store
                .append_if(
                    &seat,
                    ExpectedVersion::Any,
                    vec![tagged("SeatTaken", [course])],
                    condition,
                )
                .await
        })
    };
    // The session waiting for that very key, and whether it has an id meanwhile.
    let has_id: bool = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let found: Option<bool> = sqlx::query_scalar(
                "SELECT a.backend_xid IS NOT NULL \
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid, \
                      hashtextextended($1, 0) AS k \
                 WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objsubid = 1 \
                   AND l.classid = oid((k >> 32) & 4294967295) \
                   AND l.objid = oid(k & 4294967295)",
            )
            .bind(&stream_key)
            .fetch_optional(store.pool())
            .await
            .unwrap();
            if let Some(has_id) = found {
                break has_id;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the conditional append waits for the stream's lock");
    assert!(
        !has_id,
        "an append waiting for its stream's lock has no transaction id yet"
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut archive)
        .await
        .unwrap();
    let committed = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the append ends once the lock is released")
        .unwrap()
        .expect("the append goes through");
    assert_eq!(committed.events.len(), 1);
    archive.close().await.unwrap();
    common::drop_schema(store).await;
}

/// `es_append_if` called directly (the application role may) takes arrays for one event
/// as migration 0009's statement did: two types for one id are refused, storing nothing;
/// an id array indexed from 0 is one event, stored (migration 0012's single-event
/// statement, which reads the first elements by index, takes only arrays of exactly one
/// element from 1, and leaves other shapes to the general statement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_append_if_takes_one_events_arrays_as_before() {
    // Its calls wait for older writers, such as the other tests' held transactions.
    let _alone = HOLDING.lock().await;
    let store = common::fresh_store().await;
    let call = |ids: &str, types: &str| {
        format!(
            "SELECT count(*) FROM \"{}\".es_append_if('direct-1', NULL, {ids}, {types}, \
             ARRAY[1], ARRAY['{{}}'::jsonb], ARRAY[gen_random_uuid()], ARRAY[gen_random_uuid()], \
             ARRAY[NULL::text], ARRAY['{{}}'::jsonb], ARRAY[NULL::text], ARRAY['k:v'], \
             '[{{\"tags\": [\"k:v\"]}}]', ARRAY['k:v'], '0'::xid8, 0, ARRAY[0.001::float8], 30)",
            store.schema()
        )
    };
    let refused = sqlx::query_scalar::<_, i64>(AssertSqlSafe(call(
        "ARRAY[gen_random_uuid()]",
        "ARRAY['Noted', 'Noted']",
    )))
    .fetch_one(store.pool())
    .await;
    // The second type's row has no event id: the not-null constraint refuses it.
    let code = refused
        .as_ref()
        .err()
        .and_then(|e| e.as_database_error())
        .and_then(|e| e.code())
        .map(|code| code.into_owned());
    assert_eq!(
        code.as_deref(),
        Some("23502"),
        "one id with two types is refused, got {refused:?}"
    );
    let stored = || async {
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{}\".events",
            store.schema()
        )))
        .fetch_one(store.pool())
        .await
        .unwrap()
    };
    assert_eq!(stored().await, 0, "nothing was stored");
    // (Arrays from 1 take the single-event statement: every decision test runs it.)
    let inserted: i64 = sqlx::query_scalar(AssertSqlSafe(call(
        "('[0:0]={' || gen_random_uuid() || '}')::uuid[]",
        "ARRAY['Noted']",
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(inserted, 1, "an id array from 0: one event");
    assert_eq!(stored().await, 1);
    common::drop_schema(store).await;
}
