//! Relay throughput and commit-to-NATS latency, beside a bare async-nats publish loop of the
//! same payloads measured in the same run.
//!
//! Run with `cargo bench -p es-nats --bench relay` (NATS_URL or the local server with
//! JetStream; DATABASE_URL or the local PostgreSQL). Works on streams and a schema of its
//! own and removes them at the end. Prints figures and ratios; asserts nothing about time.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary: printing is its output, a failure aborts it"
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, Context};
use es_core::{DomainEvent, EventStore, ExpectedVersion, NewEvent, ProjectionRunner, StreamId};
use es_memory::MemoryEventStore;
use es_nats::Relay;
use es_postgres::PgEventStore;
use futures_util::StreamExt as _;
use uuid::Uuid;

const EVENTS: usize = 20_000;
const IN_FLIGHT: usize = 256;
const ROUNDS: usize = 3;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, DomainEvent)]
enum LedgerEvent {
    Recorded { memo: String },
}

/// About 200 bytes of JSON.
fn memo(n: usize) -> String {
    format!("{n:>12} {}", "lorem ipsum dolor sit amet ".repeat(6))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", Uuid::now_v7().simple())
}

async fn fill<S: EventStore>(store: &S) {
    for chunk in 0..EVENTS / 10 {
        let stream = StreamId::new("ledger", &format!("{}", chunk % 1000)).unwrap();
        let events = (0..10)
            .map(|i| {
                NewEvent::new(LedgerEvent::Recorded {
                    memo: memo(chunk * 10 + i),
                })
            })
            .collect();
        store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
}

/// Relays the whole log once; events per second.
async fn relay_rate<S: es_core::Store>(store: &S, jetstream: &Context) -> f64 {
    let stream = unique("BENCH_RELAY_");
    let relay = Relay::builder(store.clone(), jetstream.clone())
        .name(unique("bench-relay-"))
        .stream(&stream)
        .route("ledger", format!("{stream}.ledger.{{streamId}}"))
        .max_in_flight(IN_FLIGHT)
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let relayed = ProjectionRunner::new(store.clone(), relay)
        .catch_up()
        .await
        .unwrap();
    let rate = relayed as f64 / started.elapsed().as_secs_f64();
    assert_eq!(relayed as usize, EVENTS);
    jetstream.delete_stream(&stream).await.unwrap();
    rate
}

/// The baseline: the same payloads published by a bare loop, a message id each, the same
/// number of acks in flight; events per second. With `headers`, each message also carries
/// headers of the relay's names and sizes (and the expected-last-id chain), which tells the
/// cost of the messages apart from the cost of the relay.
async fn bare_rate(jetstream: &Context, headers: bool) -> f64 {
    let stream = unique("BENCH_BARE_");
    jetstream
        .create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{stream}.>")],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();
    let payloads: Vec<_> = (0..EVENTS)
        .map(|n| serde_json::to_vec(&serde_json::json!({ "memo": memo(n) })).unwrap())
        .collect();
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    let mut previous: Option<String> = None;
    for (n, payload) in payloads.into_iter().enumerate() {
        let id = Uuid::now_v7().to_string();
        let mut message = PublishMessage::build()
            .message_id(&id)
            .payload(payload.into());
        if headers {
            let mut map = async_nats::HeaderMap::new();
            for (name, value) in [
                ("Content-Type", "application/json"),
                ("ce-specversion", "1.0"),
                ("ce-id", id.as_str()),
                ("ce-type", "Recorded"),
                ("ce-source", "ledger"),
                ("ce-subject", "ledger-123"),
                ("ce-time", "2026-12-01T11:32:49.123456+00:00"),
                ("es-schema-version", "1"),
                ("es-version", "17"),
                ("es-position", "123456:17"),
            ] {
                map.insert(name, value);
            }
            map.insert("Nats-Msg-Id", id.as_str());
            if let Some(previous) = &previous {
                map.insert("Nats-Expected-Last-Msg-Id", previous.as_str());
            }
            message = message.headers(map);
            previous = Some(id);
        }
        let ack = jetstream
            .send_publish(format!("{stream}.ledger.{}", n / 10 % 1000), message)
            .await
            .unwrap();
        pending.push_back(ack);
        if pending.len() > IN_FLIGHT {
            pending.pop_front().unwrap().await.unwrap();
        }
    }
    for ack in pending {
        ack.await.unwrap();
    }
    let rate = EVENTS as f64 / started.elapsed().as_secs_f64();
    jetstream.delete_stream(&stream).await.unwrap();
    rate
}

/// Commit-to-NATS latency with the relay running live: from `append` returning to the
/// message arriving at a subscriber of the subject. Milliseconds at p50 and p99.
async fn latency<S: es_core::Store>(
    store: &S,
    client: &async_nats::Client,
    samples: usize,
) -> (f64, f64) {
    let jetstream = jetstream::new(client.clone());
    let stream = unique("BENCH_LATENCY_");
    let relay = Relay::builder(store.clone(), jetstream.clone())
        .name(unique("bench-latency-"))
        .stream(&stream)
        .route("live", format!("{stream}.live.{{streamId}}"))
        .build()
        .await
        .unwrap();
    let mut runner =
        ProjectionRunner::new(store.clone(), relay).with_commit_interval(Duration::from_millis(50));
    let relaying = tokio::spawn(async move { runner.run().await });

    let appended: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
    let mut subscriber = client.subscribe(format!("{stream}.live.>")).await.unwrap();
    let receiving = {
        let appended = appended.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(samples);
            while latencies.len() < samples {
                let message = subscriber.next().await.unwrap();
                let arrived = Instant::now();
                let id: Uuid = message
                    .headers
                    .as_ref()
                    .unwrap()
                    .get("ce-id")
                    .unwrap()
                    .as_str()
                    .parse()
                    .unwrap();
                // The append may not have returned yet when the message is already here.
                loop {
                    if let Some(at) = appended.lock().unwrap().get(&id).copied() {
                        latencies.push(arrived.saturating_duration_since(at).as_secs_f64() * 1e3);
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
            latencies
        })
    };
    for n in 0..samples {
        let stream_id = StreamId::new("live", &(n % 50).to_string()).unwrap();
        let event = NewEvent::new(LedgerEvent::Recorded { memo: memo(n) });
        let id = event.event_id;
        store
            .append(&stream_id, ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
        appended.lock().unwrap().insert(id, Instant::now());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut latencies = receiving.await.unwrap();
    relaying.abort();
    jetstream.delete_stream(&stream).await.unwrap();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    (at(0.50), at(0.99))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_owned());
    let client = async_nats::connect(&url)
        .await
        .expect("a NATS server with JetStream");
    let jetstream = jetstream::new(client.clone());
    let pg: PgEventStore = es_testkit::postgres::fresh_store().await;

    let memory = MemoryEventStore::new();
    fill(&memory).await;
    fill(&pg).await;
    println!(
        "es-nats relay, {EVENTS} events of ~200 bytes, {IN_FLIGHT} acks in flight, median of {ROUNDS} rounds (interleaved)\n"
    );
    let (mut bare, mut bare_headers, mut from_memory, mut from_pg) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        bare.push(bare_rate(&jetstream, false).await);
        bare_headers.push(bare_rate(&jetstream, true).await);
        from_memory.push(relay_rate(&memory, &jetstream).await);
        from_pg.push(relay_rate(&pg, &jetstream).await);
    }
    let bare = median(bare);
    let bare_headers = median(bare_headers);
    let (from_memory, from_pg) = (median(from_memory), median(from_pg));
    println!(
        "{:<52} {:>10.0} events/s",
        "bare async-nats publish loop (baseline)", bare
    );
    println!(
        "{:<52} {:>10.0} events/s  {:>5.0}% of baseline",
        "bare loop, with the relay's headers and id chain",
        bare_headers,
        100.0 * bare_headers / bare
    );
    println!(
        "{:<52} {:>10.0} events/s  {:>5.0}% of baseline",
        "relay, in-memory store (the relay's own cost)",
        from_memory,
        100.0 * from_memory / bare
    );
    println!(
        "{:<52} {:>10.0} events/s  {:>5.0}% of baseline",
        "relay, PostgreSQL store (reads included)",
        from_pg,
        100.0 * from_pg / bare
    );

    let (p50, p99) = latency(&memory, &client, 1000).await;
    println!("\ncommit-to-NATS latency, relay live, 1000 single-event appends 2 ms apart:");
    println!(
        "{:<52} p50 {p50:>6.2} ms   p99 {p99:>6.2} ms",
        "in-memory store"
    );
    let (p50, p99) = latency(&pg, &client, 1000).await;
    println!(
        "{:<52} p50 {p50:>6.2} ms   p99 {p99:>6.2} ms",
        "PostgreSQL store"
    );

    es_testkit::postgres::drop_schema(pg).await;
}
