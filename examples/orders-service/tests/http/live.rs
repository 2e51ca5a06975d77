//! The live log over server-sent events, and graceful shutdown ending its streams.

use orders_service::Config;
use serde_json::json;

use crate::support::{Fixture, SseReader, on_both_stores, order_id, place, post};

on_both_stores!(live_log_over_sse, orders_service::Config::default());

async fn live_log_over_sse(fixture: &Fixture) {
    // Subscribed first; the event is appended after.
    let mut live = SseReader::open(fixture, None).await;
    let id = order_id();
    place(fixture, &id, 300).await;
    let (event_id, kind, data) = live.next_of(&id).await;
    assert_eq!(kind, "OrderNew");
    assert_eq!(
        data["position"],
        event_id.as_str(),
        "the SSE id is the position"
    );
    assert_eq!(data["version"], 1);
    assert_eq!(data["payload"]["customer"], "ada");

    // Resuming after that event delivers what came after it, not it again.
    post(
        fixture,
        &format!("/orders/{id}/pay"),
        json!({ "amount_cents": 100, "reference": "r" }),
    )
    .await;
    let mut resumed = SseReader::open(fixture, Some(&event_id)).await;
    let (_, kind, data) = resumed.next_of(&id).await;
    assert_eq!(kind, "OrderPaymentReceived");
    assert_eq!(data["version"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_live_streams() {
    let fixture = Fixture::memory(Config::default()).await;
    let mut live = SseReader::open(&fixture, None).await;
    let id = order_id();
    place(&fixture, &id, 100).await;
    live.next_of(&id).await;
    // Graceful shutdown finishes although a client keeps a stream open: the stream ends.
    fixture.finish().await;
    assert!(live.next().await.is_none(), "the stream ended");
}
