//! A stored event that no longer decodes fails the read with an error that names the
//! stream, version, event type and what is wrong, and shows none of the stored values: not
//! in its `Display`, its `Debug`, nor anywhere in its source chain. The strict store reads
//! every event back from its encoding, as a database-backed store does.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed step is a failed test"
)]

use std::error::Error;

use es_core::{EventStore as _, ExpectedVersion, NewEvent, RawEvent, ReadError, StreamId, Version};
use es_memory::MemoryEventStore;
use es_testkit::fixture::AccountEvent;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

/// Secrets with quotes, backticks, serde's `, expected ` separator and non-ASCII text; each
/// part carries `SECRET`.
const HOSTILE: &[&str] = &[
    "SECRET ada@example.com",
    "SECRET\"SECRET`SECRET\\\"SECRET",
    "SECRET`, expected `SECRET\", expected \"SECRET",
    "SECRET pässwörd 🔑 SECRET",
];

/// Every `Display` and `Debug` along the error's source chain.
fn rendered(error: &(dyn Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(error);
    while let Some(error) = next {
        out.push_str(&format!("{error}\n{error:?}\n"));
        next = error.source();
    }
    out
}

/// Appends `raw` to a stream of its own, reads it back as an `AccountEvent`, and returns
/// the read's error.
async fn unreadable(store: &MemoryEventStore, n: usize, raw: RawEvent) -> ReadError {
    let stream = StreamId::new("account", &format!("leak{n}")).unwrap();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new(raw)])
        .await
        .unwrap();
    let mut read = std::pin::pin!(store.read_stream::<AccountEvent>(&stream, Version::INITIAL));
    match read.next().await {
        Some(Err(error)) => error,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[tokio::test]
async fn undecodable_events_fail_without_showing_their_values() {
    let store = MemoryEventStore::strict();
    let mut cases: Vec<(RawEvent, &str, &str)> = Vec::new();
    for secret in HOSTILE {
        // A string where a number belongs; through an alias and an upcast step; a typed
        // upcast; a variant without fields given a payload.
        cases.push((
            RawEvent::new("Deposited", 2, json!({ "amount": secret })),
            secret,
            "invalid type: string, expected u64",
        ));
        cases.push((
            RawEvent::new("Credited", 1, json!({ "cents": secret })),
            secret,
            "invalid type: string, expected u64",
        ));
        cases.push((
            RawEvent::new("Opened", 2, json!({ "holder": { "name": secret } })),
            secret,
            "invalid type: map, expected a string",
        ));
        cases.push((
            RawEvent::new("Closed", 1, json!({ *secret: secret })),
            secret,
            "expected an empty object",
        ));
    }
    cases.push((
        RawEvent::new("Withdrawn", 1, json!({ "amount": -987_654_321 })),
        "987654321",
        "invalid value: integer, expected u64",
    ));
    for (n, (raw, secret, what)) in cases.into_iter().enumerate() {
        let stored = (raw.event_type.clone(), raw.schema_version);
        let payload: Value = raw.payload.clone();
        let error = unreadable(&store, n, raw).await;
        let ReadError::Decode {
            event_type,
            schema_version,
            ..
        } = &error
        else {
            panic!("expected a decode error, got {error:?}");
        };
        assert_eq!((event_type.clone(), *schema_version), stored);
        let shown = rendered(&error);
        assert!(!shown.contains("SECRET"), "{payload} shows:\n{shown}");
        assert!(!shown.contains(secret), "{payload} shows:\n{shown}");
        assert!(!shown.contains('🔑') && !shown.contains('ä'), "{shown}");
        assert!(
            shown.contains(&format!("leak{n}")),
            "names the stream:\n{shown}"
        );
        assert!(shown.contains(what), "{what:?} is missing from:\n{shown}");
    }
}

/// A snapshot whose state no longer decodes is skipped with a warning (the events are
/// replayed), and the warning says what is wrong without the state's values.
#[tokio::test]
async fn unusable_snapshots_are_logged_without_their_values() {
    use es_core::{Repository, Snapshot, SnapshotPolicy, SnapshotStore as _};
    use es_testkit::fixture::{Account, AccountCommand};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let store = MemoryEventStore::strict();
    let accounts =
        Repository::<Account, _>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::every(1));
    accounts
        .execute(
            "a",
            AccountCommand::Open {
                owner: "ada".into(),
            },
        )
        .await
        .unwrap();
    let stream = StreamId::new("account", "a").unwrap();
    let mut snapshot = store.load_snapshot(&stream).await.unwrap().unwrap();
    snapshot.state = json!({ "open": "SECRET ada@example.com", "balance": "SECRET 42" });
    store
        .save_snapshot(Snapshot {
            taken_at: chrono::Utc::now(),
            ..snapshot
        })
        .await
        .unwrap();

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let loaded = {
        let _guard = tracing::subscriber::set_default(subscriber);
        accounts.load("a").await.unwrap()
    };
    assert_eq!(loaded.version, Version::new(1), "the events were replayed");
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("cannot decode snapshot"), "{log}");
    assert!(
        !log.contains("SECRET"),
        "the state's values stay out of the log: {log}"
    );
}
