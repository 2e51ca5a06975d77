//! Snapshots and checkpoints.

use chrono::Utc;
use es_core::{Position, Snapshot, Version};
use serde_json::json;

use super::account;
use crate::TestStore;

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
pub async fn snapshots_keep_the_newest<S: TestStore>(store: S) {
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
pub async fn checkpoints_save_load_and_delete<S: TestStore>(store: S) {
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
