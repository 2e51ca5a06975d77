//! The live log over server-sent events, and graceful shutdown: ending its streams, and
//! not waiting for a stuck request past its grace.

use std::time::Duration;

use orders_service::Config;
use serde_json::json;

use crate::support::{Fixture, PATIENCE, SseReader, on_both_stores, order_id, place, post};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_stuck_request_only_so_long() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let fixture = Fixture::memory(Config {
        shutdown_grace: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    // A client that announces a body and never sends it: the handler waits for it, and
    // a graceful shutdown waits for the handler. `Expect: 100-continue` makes the server
    // say when the handler has started reading, so the request is surely under way.
    let mut stuck = tokio::net::TcpStream::connect(fixture.running.addr)
        .await
        .expect("connected");
    stuck
        .write_all(
            b"POST /orders/o-stuck/place HTTP/1.1\r\nhost: localhost\r\n\
              content-type: application/json\r\ncontent-length: 100\r\n\
              expect: 100-continue\r\n\r\n{\"customer\"",
        )
        .await
        .expect("sent");
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while !answer.windows(3).any(|w| w == b"100") {
            let mut chunk = [0; 256];
            let read = stuck.read(&mut chunk).await.expect("read");
            assert!(read > 0, "the server closed the connection");
            answer.extend_from_slice(&chunk[..read]);
        }
    })
    .await
    .expect("the server reads the body");
    // Without the grace, this would wait for the client forever.
    fixture.finish().await;
    drop(stuck);
}
