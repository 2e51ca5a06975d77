//! `es parked` and `es parked retry`.

use es_core::DeadLetterStore as _;
use es_testkit::postgres::{drop_schema, fresh_store};
use serde_json::json;
use uuid::Uuid;

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_events_are_listed_and_retried_by_the_application() {
    let store = fresh_store().await;
    let (position, event_id) = append(&store, "order-1", "OrderPlaced").await;
    let (other_position, other_id) = append(&store, "order-1", "OrderPaid").await;
    settle(&store).await;
    park(&store, "stream-sizes", event_id, position).await;
    park(&store, "stream-sizes", other_id, other_position).await;
    park(&store, "audit", event_id, position).await;

    let table = es(&store, &["parked"]).await.ok().stdout;
    for expected in [
        "projection",
        "event",
        "attempts",
        "error",
        "audit",
        "stream-sizes",
        &event_id.to_string(),
        "no such customer",
    ] {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }
    let json = es(&store, &["parked", "stream-sizes", "--json"])
        .await
        .ok()
        .json();
    let parked = json.as_array().unwrap();
    assert_eq!(parked.len(), 2);
    let first = &parked[0];
    assert_eq!(first["projection"], "stream-sizes");
    assert_eq!(first["event_id"], event_id.to_string());
    assert_eq!(first["stream_id"], "order-1");
    assert_eq!(first["version"], 1);
    assert_eq!(first["position"], position.to_string());
    assert_eq!(first["event_type"], "OrderPlaced");
    assert_eq!(first["error"], "no such customer");
    assert_eq!(first["attempts"], 3);
    assert!(first["parked_at"].is_string());
    es(&store, &["parked", "nothing"])
        .await
        .fails(1, "no projection `nothing`");
    es(&store, &["parked", "retry", "stream-sizes"])
        .await
        .fails(
            1,
            "is not registered in this binary, and a retry runs its code",
        );

    app(
        &store,
        &[
            "parked",
            "retry",
            "stream-sizes",
            &Uuid::now_v7().to_string(),
        ],
    )
    .await
    .fails(1, "is not parked for projection `stream-sizes`");
    let one = app(
        &store,
        &[
            "parked",
            "retry",
            "stream-sizes",
            &event_id.to_string(),
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(
        one,
        json!({ "projection": "stream-sizes", "retried": 1, "handled": 1, "still_parked": 0 })
    );
    let left = store.parked("stream-sizes").await.unwrap();
    assert_eq!(
        left.iter().map(|p| p.event_id).collect::<Vec<_>>(),
        [other_id]
    );
    assert_eq!(stream_sizes(&store).await, [("order-1".to_owned(), 1)]);
    let rest = app(&store, &["parked", "retry", "stream-sizes"]).await.ok();
    assert!(
        rest.stdout
            .contains("retried 1 parked event(s) of projection `stream-sizes`: 1 handled"),
        "{rest:?}"
    );
    assert!(store.parked("stream-sizes").await.unwrap().is_empty());
    assert_eq!(
        store.parked("audit").await.unwrap().len(),
        1,
        "another projection's stay"
    );
    drop_schema(store).await;
}
