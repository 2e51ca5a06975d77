//! `es tail`, bounded by --limit and --timeout, from the start, a position or the end.

use std::time::Duration;

use es_testkit::postgres::{drop_schema, fresh_store};
use serde_json::{Value, json};

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_the_log_within_its_bounds() {
    let store = fresh_store().await;
    append(&store, "order-1", "OrderPlaced").await;
    append(&store, "customer-1", "CustomerJoined").await;
    let (last, _) = append(&store, "order-2", "OrderPlaced").await;
    settle(&store).await;

    let two = es(
        &store,
        &["tail", "--from", "start", "--limit", "2", "--json"],
    )
    .await
    .ok();
    let lines: Vec<Value> = two
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let streams: Vec<_> = lines.iter().map(|e| e["stream_id"].clone()).collect();
    assert_eq!(streams, [json!("order-1"), json!("customer-1")]);

    let orders = es(
        &store,
        &[
            "tail",
            "--from",
            "start",
            "--category",
            "order",
            "--timeout",
            "1s",
        ],
    )
    .await
    .ok();
    let shown: Vec<_> = orders.stdout.lines().collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown.iter().all(|l| l.contains("OrderPlaced")), "{shown:?}");
    let types = es(
        &store,
        &[
            "tail",
            "--from",
            "start",
            "--event-type",
            "CustomerJoined",
            "--timeout",
            "1s",
        ],
    )
    .await
    .ok();
    assert_eq!(types.stdout.lines().count(), 1, "{types:?}");

    let quiet = es(&store, &["tail", "--timeout", "500ms"]).await.ok();
    assert_eq!(quiet.stdout, "", "nothing new after the end");

    // Live: an event appended while it waits, after the position it starts from.
    let from = last.to_string();
    let schema = store.schema().as_str().to_owned();
    let waiting = tokio::spawn(async move {
        run_with(
            es_binary(),
            &[],
            &[
                "--schema",
                &schema,
                "tail",
                "--from",
                &from,
                "--limit",
                "1",
                "--timeout",
                "30s",
                "--json",
            ],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&store, "order-3", "OrderPlaced").await;
    let live = waiting.await.unwrap().ok();
    let event: Value = serde_json::from_str(live.stdout.trim()).unwrap();
    assert_eq!(event["stream_id"], "order-3");

    let usage = es(&store, &["tail", "--from", "middle"]).await;
    assert_eq!(usage.code, 2, "{usage:?}");
    drop_schema(store).await;
}
