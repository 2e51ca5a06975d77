//! `PgAdmin`, the operator's queries behind the `es` CLI, against the real server: the
//! schema's migration state, the stream list, projections with their lag, leases and
//! parked events, and forgetting a projection's checkpoints.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::time::Duration;

use chrono::Utc;
use es_core::{
    CheckpointStore as _, DeadLetterStore as _, EventStore as _, ExpectedVersion, LeaseStore as _,
    NewEvent, ParkedEvent, Partition, Position, RawEvent, StreamId,
};
use es_postgres::PgEventStore;
use serde_json::json;
use uuid::Uuid;

/// Appends `count` events to `stream`, returning their positions.
async fn append(store: &PgEventStore, stream: &str, count: usize) -> Vec<Position> {
    let stream = StreamId::parse(stream).unwrap();
    let events = (0..count)
        .map(|n| NewEvent::new(RawEvent::new("Happened", 1, json!({ "n": n }))))
        .collect();
    let committed = store
        .append(&stream, ExpectedVersion::Any, events)
        .await
        .unwrap();
    committed.events.iter().map(|e| e.position).collect()
}

/// Waits until everything appended so far is readable (appends of this test only, but
/// other tests' transactions may hold the horizon for a moment).
async fn settle(store: &PgEventStore) {
    let head = store.head().await.unwrap().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !store.readable(head).await.unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "the log stays held back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn schema_status_tells_migrated_from_never_migrated() {
    let store = common::fresh_store().await;
    let status = store.admin().schema_status().await.unwrap();
    assert!(status.is_migrated() && status.is_current(), "{status:?}");
    assert_eq!(status.schema, store.schema().as_str());
    assert!(status.latest >= 6);

    // The same server, a schema nobody migrated.
    let never = PgEventStore::builder(store.pool().clone())
        .schema(&format!("{}_never", store.schema()))
        .unwrap()
        .build();
    let status = never.admin().schema_status().await.unwrap();
    assert_eq!(status.applied, 0);
    assert!(!status.is_migrated() && !status.is_current());
    common::drop_schema(store).await;
}

#[tokio::test]
async fn streams_are_listed_with_counts_versions_and_archived_flags() {
    let store = common::fresh_store().await;
    append(&store, "order-1", 2).await;
    append(&store, "order-2", 1).await;
    append(&store, "customer-1", 3).await;
    store
        .archive_stream(&StreamId::parse("order-2").unwrap())
        .await
        .unwrap();
    let admin = store.admin();

    let all = admin.streams(None, None, 10).await.unwrap();
    let seen: Vec<_> = all
        .iter()
        .map(|s| (s.stream_id.as_str(), s.events, s.version.get(), s.archived))
        .collect();
    assert_eq!(
        seen,
        [
            ("customer-1", 3, 3, false),
            ("order-1", 2, 2, false),
            ("order-2", 1, 1, true),
        ]
    );
    assert!(
        all.iter()
            .all(|s| s.first_recorded_at <= s.last_recorded_at)
    );

    let orders = admin.streams(Some("order"), None, 10).await.unwrap();
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert!(orders.iter().all(|s| s.stream_id.category() == "order"));

    // Paging: a limit, then on after the last one seen.
    let first = admin.streams(None, None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = admin
        .streams(None, Some(&first[1].stream_id), 2)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].stream_id.as_str(), "order-2");
    assert!(
        admin
            .streams(Some("nothing"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    common::drop_schema(store).await;
}

#[tokio::test]
async fn projections_show_checkpoint_lag_lease_and_parked_events() {
    let store = common::fresh_store().await;
    let positions = append(&store, "order-1", 4).await;
    settle(&store).await;
    let admin = store.admin();
    assert!(admin.projections().await.unwrap().is_empty());

    // `view` handled the first event, runs now, and parked the second.
    store.save_checkpoint("view", positions[0]).await.unwrap();
    let owner = Uuid::now_v7();
    assert!(
        store
            .acquire_lease("view", owner, Duration::from_secs(60))
            .await
            .unwrap()
    );
    let parked = ParkedEvent {
        projection: "view".to_owned(),
        event_id: Uuid::now_v7(),
        stream_id: StreamId::parse("order-1").unwrap(),
        version: es_core::Version::new(2),
        position: positions[1],
        event_type: "Happened".to_owned(),
        error: "no such customer".to_owned(),
        attempts: 3,
        parked_at: Utc::now(),
    };
    store.park(parked.clone()).await.unwrap();
    // `idle` only has a lease that ran out; `other` only parked events.
    assert!(
        store
            .acquire_lease("idle", Uuid::now_v7(), Duration::from_millis(1))
            .await
            .unwrap()
    );
    store
        .park(ParkedEvent {
            projection: "other".to_owned(),
            ..parked.clone()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let projections = admin.projections().await.unwrap();
    let names: Vec<_> = projections.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["idle", "other", "view"]);
    let view = &projections[2];
    assert_eq!(view.checkpoint, Some(positions[0]));
    assert!(view.checkpoint_updated_at.is_some());
    assert_eq!(view.lag, 3, "the three events after the checkpoint");
    let lease = view.lease.as_ref().unwrap();
    assert_eq!(lease.owner, owner);
    assert!(lease.held);
    assert_eq!(
        (view.parked, view.last_error.as_deref()),
        (1, Some("no such customer"))
    );
    let idle = &projections[0];
    assert!(!idle.lease.as_ref().unwrap().held, "its lease ran out");
    assert_eq!((idle.checkpoint, idle.lag, idle.parked), (None, 4, 0));
    assert_eq!(admin.projection("view").await.unwrap().as_ref(), Some(view));
    assert_eq!(admin.projection("nothing").await.unwrap(), None);

    // Parked events: one projection's, or all, by projection.
    // (PostgreSQL keeps microseconds of the time.)
    let view_parked = admin.parked(Some("view")).await.unwrap();
    let ids: Vec<_> = view_parked
        .iter()
        .map(|p| (p.event_id, p.attempts))
        .collect();
    assert_eq!(ids, [(parked.event_id, 3)]);
    let all = admin.parked(None).await.unwrap();
    let by: Vec<_> = all.iter().map(|p| p.projection.as_str()).collect();
    assert_eq!(by, ["other", "view"]);
    common::drop_schema(store).await;
}

#[tokio::test]
async fn a_partition_key_lags_by_its_partition_only() {
    let store = common::fresh_store().await;
    for n in 0..8 {
        append(&store, &format!("order-{n}"), 1).await;
    }
    settle(&store).await;
    // The keys partitioned runners write: `view#1/2` and `view#2/2`.
    for partition in Partition::all(2) {
        store
            .save_checkpoint(&format!("view#{partition}"), Position::START)
            .await
            .unwrap();
    }
    let projections = store.admin().projections().await.unwrap();
    let lags: Vec<u64> = projections.iter().map(|p| p.lag).collect();
    assert_eq!(
        lags.iter().sum::<u64>(),
        8,
        "each event in one partition: {lags:?}"
    );
    common::drop_schema(store).await;
}

#[tokio::test]
async fn a_category_is_its_streams_only_not_those_of_categories_it_begins() {
    let store = common::fresh_store().await;
    for stream in [
        "order-1",
        "order-zz",
        "order-Ω",
        "order--x",
        "order2-1",
        "orders-1",
        "order_x-1",
        "orde-1",
        "ordes-1",
    ] {
        append(&store, stream, 1).await;
    }
    let admin = store.admin();
    let ids = |streams: Vec<es_postgres::PgStreamSummary>| -> Vec<String> {
        streams
            .iter()
            .map(|s| s.stream_id.as_str().to_owned())
            .collect()
    };
    let mut expected = vec!["order--x", "order-1", "order-zz", "order-Ω"];
    let mut orders = ids(admin.streams(Some("order"), None, 10).await.unwrap());
    orders.sort_unstable();
    expected.sort_unstable();
    assert_eq!(orders, expected);
    assert_eq!(
        ids(admin.streams(Some("orders"), None, 10).await.unwrap()),
        ["orders-1"]
    );
    assert_eq!(
        ids(admin.streams(Some("order2"), None, 10).await.unwrap()),
        ["order2-1"]
    );
    assert_eq!(
        ids(admin.streams(Some("orde"), None, 10).await.unwrap()),
        ["orde-1"]
    );
    // Paging within the category, one at a time, meets each of its streams once.
    let mut paged = Vec::new();
    let mut after: Option<StreamId> = None;
    loop {
        let page = admin
            .streams(Some("order"), after.as_ref(), 1)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.stream_id.clone());
        paged.push(last.stream_id.as_str().to_owned());
    }
    paged.sort_unstable();
    assert_eq!(paged, expected);
    common::drop_schema(store).await;
}

#[tokio::test]
async fn a_projections_lease_keys_are_its_own_and_every_partitions() {
    let store = common::fresh_store().await;
    let admin = store.admin();
    assert_eq!(admin.lease_keys("view").await.unwrap(), ["view"]);
    let owner = Uuid::now_v7();
    store
        .acquire_lease("view#2/3", owner, Duration::from_secs(60))
        .await
        .unwrap();
    // Other projections' keys, which look alike.
    for name in ["view#v2", "viewer", "viewer#1/2", "view#0/2", "view#3/2"] {
        store.save_checkpoint(name, Position::START).await.unwrap();
    }
    let position = append(&store, "order-1", 1).await[0];
    store.save_checkpoint("view#1/2", position).await.unwrap();
    assert_eq!(
        admin.lease_keys("view").await.unwrap(),
        [
            "view", "view#1/2", "view#1/3", "view#2/2", "view#2/3", "view#3/3"
        ],
        "the siblings of each count seen, whether a lease or a checkpoint showed it"
    );
    common::drop_schema(store).await;
}

#[tokio::test]
async fn forgetting_checkpoints_takes_the_partitions_and_leaves_other_names() {
    let store = common::fresh_store().await;
    let position = append(&store, "order-1", 1).await[0];
    for name in ["view", "view#0/2", "view#1/2", "view#v2", "viewer"] {
        store.save_checkpoint(name, position).await.unwrap();
    }
    let admin = store.admin();
    assert_eq!(admin.forget_checkpoints("view").await.unwrap(), 3);
    for (name, kept) in [
        ("view", false),
        ("view#0/2", false),
        ("view#1/2", false),
        ("view#v2", true),
        ("viewer", true),
    ] {
        assert_eq!(
            store.load_checkpoint(name).await.unwrap().is_some(),
            kept,
            "{name}"
        );
    }
    assert_eq!(admin.forget_checkpoints("view").await.unwrap(), 0);
    common::drop_schema(store).await;
}

#[tokio::test]
async fn following_from_the_readable_head_misses_no_late_commit() {
    use futures_util::StreamExt as _;

    let store = common::fresh_store().await;
    append(&store, "order-1", 1).await;
    settle(&store).await;
    // A transaction that takes its id now and writes only later, after a newer one
    // committed: its event sorts before that one.
    let _permit = common::hold_connections(1).await;
    let options: sqlx::postgres::PgConnectOptions = common::database_url().parse().unwrap();
    let mut late = <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut late).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut late)
        .await
        .unwrap();
    let newer = append(&store, "order-2", 1).await[0];
    let admin = store.admin();
    let start = admin.readable_head().await.unwrap();
    assert_eq!(store.head().await.unwrap(), Some(newer));
    assert!(
        start < Some(newer),
        "the newer event waits behind the open transaction"
    );

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{}\".events (stream_id, version, event_id, event_type, schema_version, payload, metadata) \
         VALUES ('order-3', 1, $1, 'Late', 1, '{{}}', '{{}}')",
        store.schema()
    )))
    .bind(Uuid::now_v7())
    .execute(&mut late)
    .await
    .unwrap();
    sqlx::query("COMMIT").execute(&mut late).await.unwrap();
    settle(&store).await;

    let after = store.read_all::<RawEvent>(
        start.unwrap_or(Position::START),
        es_core::EventFilter::all(),
    );
    let streams: Vec<String> = after
        .map(|e| e.unwrap().stream_id.to_string())
        .collect()
        .await;
    assert!(
        streams.ends_with(&["order-3".to_owned(), "order-2".to_owned()]),
        "the late event and the newer one, in log order: {streams:?}"
    );
    assert_eq!(
        admin.readable_head().await.unwrap(),
        store.head().await.unwrap()
    );
    common::drop_schema(store).await;
}
