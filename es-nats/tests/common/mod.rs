//! Shared by the relay tests: the NATS server, a test domain, and the check that a
//! JetStream stream holds exactly the log.

#![allow(dead_code, reason = "each test binary uses a different part")]
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test support: a failed step is a failed test"
)]

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, Context};
use es_core::{DomainEvent, EventFilter, EventStore, Position, RawEvent, StreamId};
use futures_util::TryStreamExt as _;
use uuid::Uuid;

/// The NATS server the tests use: `NATS_URL`, or the local one.
pub(crate) fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_owned())
}

/// A JetStream context on `url`, failing the test with what to do when no server answers.
pub(crate) async fn jetstream_at(url: &str) -> Context {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(std::time::Duration::from_secs(3))
        .connect(url)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "\n\nNo NATS server answers at {url}: {error}\nThese tests need one with \
                 JetStream: `nats-server -js`, or set NATS_URL.\n"
            )
        });
    jetstream::new(client)
}

/// A JetStream context on the shared test server, which always holds one stream of the
/// tests' own (kept, never deleted). Seen with nats-server 2.9.10: once an account's last
/// stream is deleted its storage directory is gone, and a stream created at that moment
/// fails ("could not create storage directory", error 10049). Tests create and delete
/// streams in parallel; a clean-clone CI run failed so.
pub(crate) async fn jetstream() -> Context {
    let context = jetstream_at(&nats_url()).await;
    context
        .get_or_create_stream(jetstream::stream::Config {
            name: "ES_TESTS_ANCHOR".to_owned(),
            subjects: vec!["es-tests-anchor.unused".to_owned()],
            max_messages: 1,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|error| panic!("the tests' anchor stream cannot be made: {error}"));
    context
}

/// A name no other test (or run) uses: `prefix` and a time-and-random suffix.
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}{}_{:08x}",
        nanos % 1_000_000_000_000,
        fastrand::u32(..)
    )
}

/// A small domain with an upcast, relayed by the tests.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
pub(crate) enum ParcelEvent {
    /// A parcel was registered.
    #[event(name = "ParcelRegistered")]
    Registered { weight_grams: u32, to: String },
    /// It moved; version 1 called the place `at`.
    #[event(name = "ParcelMoved", version = 2, upcast(from = 1, with = moved_v1))]
    Moved { place: String },
    #[event(name = "ParcelDelivered")]
    Delivered,
}

fn moved_v1(event: RawEvent) -> Result<RawEvent, es_core::UpcastError> {
    Ok(event.rename_field("at", "place")?.with_version(2))
}

/// What a JetStream stream holds, in stream order: each message's subject and headers
/// as the relay wrote them.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) subject: String,
    pub(crate) event_id: Uuid,
    pub(crate) stream_id: StreamId,
    pub(crate) version: u64,
    pub(crate) position: Position,
    pub(crate) payload: serde_json::Value,
}

/// Every message of `stream`, in stream order.
pub(crate) async fn held(jetstream: &Context, stream: &str) -> Vec<Held> {
    let mut handle = jetstream.get_stream(stream).await.unwrap();
    let state = handle.info().await.unwrap().state.clone();
    let mut held = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        if state.messages == 0 {
            break;
        }
        let message = match handle.get_raw_message(sequence).await {
            Ok(message) => message,
            // A deleted message leaves a hole in the sequence.
            Err(error)
                if error.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound =>
            {
                continue;
            }
            Err(error) => panic!("message {sequence}: {error}"),
        };
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .unwrap_or_else(|| panic!("message {sequence} has no {name}"))
                .as_str()
                .to_owned()
        };
        held.push(Held {
            subject: message.subject.to_string(),
            event_id: header("Nats-Msg-Id").parse().unwrap(),
            stream_id: header("ce-subject").parse().unwrap(),
            version: header("es-version").parse().unwrap(),
            position: header("es-position").parse().unwrap(),
            payload: serde_json::from_slice(&message.payload).unwrap(),
        });
    }
    held
}

/// Asserts that `stream` holds exactly the events of `categories` in `store`'s log: each
/// once, in log order (so each stream's in version order), nothing else. Returns how many.
pub(crate) async fn assert_holds_exactly_the_log<S: EventStore>(
    store: &S,
    jetstream: &Context,
    stream: &str,
    categories: &[&str],
) -> usize {
    let log: Vec<_> = store
        .read_all::<RawEvent>(
            Position::START,
            EventFilter::all().with_categories(categories.iter().copied()),
        )
        .try_collect()
        .await
        .unwrap();
    let held = held(jetstream, stream).await;
    let mut seen = BTreeMap::new();
    for (index, message) in held.iter().enumerate() {
        if let Some(first) = seen.insert(message.event_id, index) {
            panic!(
                "event {} is held twice: messages {first} and {index}",
                message.event_id
            );
        }
    }
    let held_ids: Vec<Uuid> = held.iter().map(|m| m.event_id).collect();
    let log_ids: Vec<Uuid> = log.iter().map(|e| e.event_id).collect();
    if held_ids != log_ids {
        let missing = log_ids.iter().filter(|id| !seen.contains_key(id)).count();
        let extra = held_ids.iter().filter(|id| !log_ids.contains(id)).count();
        panic!(
            "the stream does not hold the log in order: {} held, {} in the log, {missing} \
             missing, {extra} not in the log",
            held_ids.len(),
            log_ids.len()
        );
    }
    for (message, event) in held.iter().zip(&log) {
        assert_eq!(message.stream_id, event.stream_id);
        assert_eq!(message.version, event.version.get());
        assert_eq!(message.position, event.position);
        assert_eq!(message.payload, event.event.payload, "payload as stored");
    }
    held.len()
}

/// Deletes JetStream stream `.1` on the server at `.0` when dropped, so a failed test
/// leaves nothing behind.
pub(crate) struct Cleanup(pub(crate) String, pub(crate) String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, name) = (self.0.clone(), self.1.clone());
        // The test's runtime may be gone (and its client with it): a runtime and a
        // connection of its own delete the stream.
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(async move {
                    if let Ok(client) = async_nats::connect(url).await {
                        let _ = jetstream::new(client).delete_stream(&name).await;
                    }
                });
            }
        })
        .join();
    }
}
