//! Snapshots, checkpoints, parked events and leases, as the store keeps them.

use chrono::Utc;
use es_core::{ExpectedVersion, LoadItem, Position, Snapshot, Version};
use futures_util::TryStreamExt as _;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

use super::{account, deposits};
use crate::fixture::AccountEvent;
use es_core::Store;

fn snapshot(id: &str, version: u64) -> Snapshot {
    Snapshot {
        stream_id: account(id),
        version: Version::new(version),
        schema_version: 2,
        state: json!({ "version": version, "nested": { "list": [1, 2, 3], "text": "ünï" } }),
        taken_at: Utc::now(),
    }
}

/// A stream keeps its newest snapshot; an older one never replaces it; streams are
/// independent.
pub async fn snapshots_keep_the_newest<S: Store>(store: S) {
    assert_eq!(store.load_snapshot(&account("s")).await.unwrap(), None);
    store.save_snapshot(snapshot("s", 5)).await.unwrap();
    let loaded = store.load_snapshot(&account("s")).await.unwrap().unwrap();
    assert_eq!(loaded.version, Version::new(5));
    assert_eq!(loaded.schema_version, 2);
    assert_eq!(loaded.state, snapshot("s", 5).state);
    assert_eq!(loaded.stream_id, account("s"));

    store.save_snapshot(snapshot("s", 3)).await.unwrap();
    let loaded = store.load_snapshot(&account("s")).await.unwrap().unwrap();
    assert_eq!(
        loaded.version,
        Version::new(5),
        "an older snapshot is ignored"
    );

    store.save_snapshot(snapshot("s", 8)).await.unwrap();
    let loaded = store.load_snapshot(&account("s")).await.unwrap().unwrap();
    assert_eq!(loaded.version, Version::new(8));

    assert_eq!(store.load_snapshot(&account("t")).await.unwrap(), None);
}

/// Checkpoints are saved, overwritten (also backwards, for rebuilds), kept apart by name
/// and deleted.
pub async fn checkpoints_save_load_and_delete<S: Store>(store: S) {
    assert_eq!(store.load_checkpoint("orders-view").await.unwrap(), None);
    let p1 = Position::from_parts(7, 123_456_789);
    let p2 = Position::from_parts(8, 123_456_790);
    store.save_checkpoint("orders-view", p1).await.unwrap();
    assert_eq!(
        store.load_checkpoint("orders-view").await.unwrap(),
        Some(p1)
    );
    store.save_checkpoint("orders-view", p2).await.unwrap();
    assert_eq!(
        store.load_checkpoint("orders-view").await.unwrap(),
        Some(p2)
    );
    store
        .save_checkpoint("orders-view", Position::START)
        .await
        .unwrap();
    assert_eq!(
        store.load_checkpoint("orders-view").await.unwrap(),
        Some(Position::START),
        "a checkpoint may move back"
    );
    store
        .save_checkpoint("it's another; view", p1)
        .await
        .unwrap();
    assert_eq!(
        store.load_checkpoint("it's another; view").await.unwrap(),
        Some(p1)
    );
    store.delete_checkpoint("orders-view").await.unwrap();
    assert_eq!(store.load_checkpoint("orders-view").await.unwrap(), None);
    assert_eq!(
        store.load_checkpoint("it's another; view").await.unwrap(),
        Some(p1)
    );
}

/// Parked events are kept per projection, replaced by event id, listed in log order and
/// removed; leases go to one owner at a time until released or expired.
pub async fn parked_events_and_leases_are_stored<S: Store>(store: S) {
    use es_core::ParkedEvent;
    use std::time::Duration;
    use uuid::Uuid;

    let parked = |n: u64, error: &str| ParkedEvent {
        projection: "view".to_owned(),
        event_id: Uuid::from_u128(u128::from(n)),
        stream_id: account("p"),
        version: Version::new(n),
        position: Position::from_parts(n, n),
        event_type: "Deposited".to_owned(),
        error: error.to_owned(),
        attempts: 1,
        parked_at: Utc::now(),
    };
    assert!(store.parked("view").await.unwrap().is_empty());
    store.park(parked(5, "boom")).await.unwrap();
    store.park(parked(2, "bang")).await.unwrap();
    store.park(parked(5, "boom again")).await.unwrap();
    let listed = store.parked("view").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].version, Version::new(2), "log order");
    assert_eq!(listed[1].error, "boom again", "replaced by event id");
    assert_eq!(listed[1].stream_id, account("p"));
    assert!(store.parked("other").await.unwrap().is_empty());
    store.unpark("view", Uuid::from_u128(5)).await.unwrap();
    assert_eq!(store.parked("view").await.unwrap().len(), 1);

    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    // Long enough that no step below outlasts it on a loaded machine; only the last
    // step's lease is short, to see it run out.
    let ttl = Duration::from_secs(60);
    assert!(store.acquire_lease("job", a, ttl).await.unwrap());
    assert!(
        store.acquire_lease("job", a, ttl).await.unwrap(),
        "the holder renews"
    );
    assert!(
        !store.acquire_lease("job", b, ttl).await.unwrap(),
        "another waits"
    );
    assert!(store.acquire_lease("other-job", b, ttl).await.unwrap());
    store.release_lease("job", b).await.unwrap();
    assert!(
        !store.acquire_lease("job", b, ttl).await.unwrap(),
        "only the holder releases"
    );
    store.release_lease("job", a).await.unwrap();
    let short = Duration::from_millis(100);
    assert!(
        store.acquire_lease("job", b, short).await.unwrap(),
        "released: free"
    );
    tokio::time::sleep(short * 2).await;
    assert!(
        store.acquire_lease("job", a, ttl).await.unwrap(),
        "expired: free"
    );
}

/// A lease taken for longer than the store can count (`Duration::MAX`) is not an error: it
/// is held as long as the store can hold it, renewed by its holder, refused to others, and
/// freed by release.
pub async fn lease_with_an_unbounded_ttl_is_held<S: Store>(store: S) {
    use std::time::Duration;
    use uuid::Uuid;

    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    assert!(
        store
            .acquire_lease("forever", a, Duration::MAX)
            .await
            .unwrap()
    );
    assert!(
        store
            .acquire_lease("forever", a, Duration::MAX)
            .await
            .unwrap(),
        "the holder renews"
    );
    assert!(
        !store
            .acquire_lease("forever", b, Duration::from_millis(1))
            .await
            .unwrap(),
        "another waits"
    );
    store.release_lease("forever", a).await.unwrap();
    assert!(
        store
            .acquire_lease("forever", b, Duration::MAX)
            .await
            .unwrap(),
        "released: free"
    );
}

/// Renewing a lease succeeds only for the owner nobody displaced, even after it ran out
/// unnoticed; once another owner took it, or it was released, renewal fails.
pub async fn lease_renewal_proves_nobody_took_it<S: Store>(store: S) {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let short = Duration::from_millis(50);
    assert!(store.acquire_lease("renewed", a, short).await.unwrap());
    tokio::time::sleep(short * 2).await;
    assert!(
        store.renew_lease("renewed", a, short).await.unwrap(),
        "ran out, but nobody took it"
    );
    assert!(!store.renew_lease("renewed", b, short).await.unwrap());
    tokio::time::sleep(short * 2).await;
    assert!(store.acquire_lease("renewed", b, short).await.unwrap());
    assert!(
        !store.renew_lease("renewed", a, short).await.unwrap(),
        "another owner took it"
    );
    store.release_lease("renewed", b).await.unwrap();
    assert!(
        !store.renew_lease("renewed", b, short).await.unwrap(),
        "released"
    );
    assert!(!store.renew_lease("never taken", a, short).await.unwrap());
}

/// An aggregate's load (`SnapshotStore::load_events`) starts with whether the stream is
/// archived and, when asked for, its snapshot past the starting version; then come the
/// events after that snapshot (or after the starting version), in order, decoded as
/// `read_stream` decodes them, across as many pages as the stream takes.
pub async fn load_events_start_with_the_snapshot_then_the_events_after<S: Store>(store: S) {
    async fn load<S: Store>(
        store: &S,
        stream: &es_core::StreamId,
        after: u64,
        snapshot: bool,
    ) -> (es_core::LoadStart, Vec<(u64, AccountEvent)>) {
        let items: Vec<_> = store
            .load_events::<AccountEvent>(stream, Version::new(after), snapshot)
            .try_collect()
            .await
            .unwrap();
        let mut items = items.into_iter();
        let Some(LoadItem::Start(start)) = items.next() else {
            panic!("a load starts with its start");
        };
        let events = items
            .map(|item| match item {
                LoadItem::Event { version, event, .. } => (version.get(), event),
                other => panic!("only the first item is a start: {other:?}"),
            })
            .collect();
        (start, events)
    }
    let deposits_from = |first: u64, last: u64| -> Vec<(u64, AccountEvent)> {
        (first..=last)
            .map(|n| (n, AccountEvent::Deposited { amount: n }))
            .collect()
    };

    let stream = account("load-events");
    let (start, events) = load(&store, &stream, 0, true).await;
    assert_eq!(
        (start.snapshot, start.archived, events.len()),
        (None, false, 0)
    );

    // More events than a small page holds, so that later pages are read too.
    store
        .append(&stream, ExpectedVersion::NoStream, deposits(25))
        .await
        .unwrap();
    let (start, events) = load(&store, &stream, 0, true).await;
    assert_eq!((start.snapshot, start.archived), (None, false));
    assert_eq!(events, deposits_from(1, 25));
    let (_, events) = load(&store, &stream, 20, false).await;
    assert_eq!(
        events,
        deposits_from(21, 25),
        "events after the version asked for"
    );
    let (_, events) = load(&store, &stream, 21, false).await;
    assert_eq!(
        events,
        deposits_from(22, 25),
        "a tail that fills a page of four exactly"
    );

    let saved = snapshot("load-events", 10);
    store.save_snapshot(saved.clone()).await.unwrap();
    let (start, events) = load(&store, &stream, 0, true).await;
    let loaded = start.snapshot.expect("the snapshot, asked for");
    assert_eq!(
        (loaded.version, loaded.schema_version, &loaded.state),
        (saved.version, saved.schema_version, &saved.state)
    );
    assert_eq!(loaded.stream_id, stream);
    assert_eq!(
        events,
        deposits_from(11, 25),
        "the events after the snapshot"
    );
    let (start, events) = load(&store, &stream, 0, false).await;
    assert_eq!(start.snapshot, None, "not asked for");
    assert_eq!(events, deposits_from(1, 25));
    let (start, events) = load(&store, &stream, 10, true).await;
    assert_eq!(start.snapshot, None, "not past the starting version");
    assert_eq!(events, deposits_from(11, 25));
    let (start, events) = load(&store, &stream, 25, true).await;
    assert_eq!((start.snapshot, events.len()), (None, 0));

    store.archive_stream(&stream).await.unwrap();
    let (start, events) = load(&store, &stream, 0, true).await;
    assert!(start.archived);
    assert_eq!(start.snapshot.map(|s| s.version), Some(Version::new(10)));
    assert_eq!(
        events,
        deposits_from(11, 25),
        "an archived stream keeps its history"
    );
}
