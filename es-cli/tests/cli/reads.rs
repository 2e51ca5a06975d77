//! The read commands: `es streams`, `es show` (with time travel) and `es horizon`.

use std::time::Duration;

use es_core::{EventStore as _, Metadata, StreamId};
use es_testkit::postgres::{drop_schema, fresh_store};
use serde_json::{Value, json};
use uuid::Uuid;

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_listed_as_a_table_and_as_json() {
    let store = fresh_store().await;
    append(&store, "order-1", "OrderPlaced").await;
    append(&store, "order-1", "OrderShipped").await;
    append(&store, "order-2", "OrderPlaced").await;
    append(&store, "customer-7", "CustomerJoined").await;
    store
        .archive_stream(&StreamId::parse("order-2").unwrap())
        .await
        .unwrap();

    let table = es(&store, &["streams"]).await.ok().stdout;
    for expected in [
        "stream",
        "events",
        "version",
        "archived",
        "order-1",
        "customer-7",
    ] {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }
    let row = table.lines().find(|l| l.contains("order-2")).unwrap();
    assert!(row.contains("yes"), "archived: {row}");

    let json = es(&store, &["streams", "--json"]).await.ok().json();
    let streams = json.as_array().unwrap();
    assert_eq!(streams.len(), 3);
    let first = &streams[0];
    assert_eq!(first["stream_id"], "customer-7");
    assert_eq!(first["category"], "customer");
    assert_eq!(
        (first["events"].clone(), first["version"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(first["archived"], false);
    assert!(first["first_recorded_at"].is_string() && first["last_recorded_at"].is_string());
    assert_eq!(streams[2]["archived"], true);

    let orders = es(&store, &["streams", "--category", "order", "--json"])
        .await
        .ok()
        .json();
    let ids: Vec<_> = orders
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream_id"].clone())
        .collect();
    assert_eq!(ids, [json!("order-1"), json!("order-2")]);
    let order_1 = &orders[0];
    assert_eq!(
        (order_1["events"].clone(), order_1["version"].clone()),
        (json!(2), json!(2))
    );

    let limited = es(&store, &["streams", "--limit", "1"]).await.ok().stdout;
    assert!(
        limited.contains("customer-7") && !limited.contains("order-1"),
        "{limited}"
    );
    assert!(
        limited.contains("the first 1 streams; pass --limit for more"),
        "{limited}"
    );
    // An archived stream keeps its history, marked.
    let archived = es(&store, &["show", "order-2"]).await.ok().stdout;
    assert!(
        archived.starts_with("stream `order-2` (archived): 1 events"),
        "{archived}"
    );
    let none = es(&store, &["streams", "--category", "invoice"]).await.ok();
    assert_eq!(none.stdout.trim(), "no streams in category `invoice`");
    drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_the_history_with_metadata_and_travels_in_time() {
    let store = fresh_store().await;
    let correlation = Uuid::now_v7();
    let metadata = Metadata::new()
        .with_correlation_id(correlation)
        .with_actor("ada")
        .with_user("tenant", "acme");
    append_with(&store, "order-1", "OrderPlaced", metadata).await;
    append(&store, "order-1", "OrderPaid").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    append(&store, "order-1", "OrderShipped").await;

    let table = es(&store, &["show", "order-1"]).await.ok().stdout;
    assert!(table.starts_with("stream `order-1`: 3 events"), "{table}");
    for expected in [
        "OrderPlaced v1",
        "OrderPaid v1",
        "OrderShipped v1",
        "actor ada",
        "tenant",
        "acme",
        r#""amount":5"#,
    ] {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }

    let history = es(&store, &["show", "order-1", "--json"]).await.ok().json();
    let events = history.as_array().unwrap();
    assert_eq!(events.len(), 3);
    let placed = &events[0];
    for field in ["event_id", "position", "recorded_at"] {
        assert!(placed[field].is_string(), "{field} in {placed}");
    }
    assert_eq!(placed["stream_id"], "order-1");
    assert_eq!(placed["version"], 1);
    assert_eq!(placed["event_type"], "OrderPlaced");
    assert_eq!(placed["schema_version"], 1);
    assert_eq!(placed["correlation_id"], correlation.to_string());
    assert_eq!(placed["causation_id"], Value::Null);
    assert_eq!(placed["actor"], "ada");
    assert_eq!(placed["metadata"], json!({ "tenant": "acme" }));
    assert_eq!(placed["payload"], json!({ "amount": 5 }));

    let at_two = es(&store, &["show", "order-1", "--as-of", "2", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(at_two.as_array().unwrap().len(), 2);
    let paid_at = events[1]["recorded_at"].as_str().unwrap();
    let then = es(&store, &["show", "order-1", "--as-of", paid_at, "--json"])
        .await
        .ok()
        .json();
    let types: Vec<_> = then
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].clone())
        .collect();
    assert_eq!(types, [json!("OrderPlaced"), json!("OrderPaid")]);
    let table = es(&store, &["show", "order-1", "--as-of", "1"])
        .await
        .ok()
        .stdout;
    assert!(
        table.starts_with("stream `order-1` as of version 1: 1 events"),
        "{table}"
    );

    es(&store, &["show", "order-9"])
        .await
        .fails(1, "no stream `order-9`");
    es(&store, &["show", "no_separator"])
        .await
        .fails(1, "is not a stream id");
    let usage = es(&store, &["show", "order-1", "--as-of", "yesterday"]).await;
    assert_eq!(usage.code, 2, "{usage:?}");
    drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn horizon_names_the_transaction_that_holds_the_log() {
    let store = fresh_store().await;
    append(&store, "order-1", "OrderPlaced").await;
    let mut holder = store.pool().acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *holder).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *holder)
        .await
        .unwrap();
    append(&store, "order-1", "OrderPaid").await;

    // Other tests' transactions may be older for a moment: look until ours is the oldest.
    let mut seen = Value::Null;
    for _ in 0..50 {
        seen = es(&store, &["horizon", "--json"]).await.ok().json();
        if seen["held_by"]["pid"] == pid {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen["held"], true, "{seen}");
    assert_eq!(seen["held_by"]["pid"], pid, "{seen}");
    assert_eq!(seen["held_by"]["state"], "idle in transaction", "{seen}");
    assert!(seen["events_waiting"].as_u64().unwrap() >= 1, "{seen}");
    assert!(seen["oldest_transaction_age"].is_string(), "{seen}");
    assert!(seen["oldest_running_transaction"].is_u64(), "{seen}");
    assert!(
        seen["summary"]
            .as_str()
            .unwrap()
            .contains("events wait behind transaction")
    );
    let table = es(&store, &["horizon"]).await.ok().stdout;
    for expected in [
        "oldest running transaction",
        "events waiting",
        "open for",
        "backend pid",
    ] {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }
    sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();
    drop(holder);
    drop_schema(store).await;
}
