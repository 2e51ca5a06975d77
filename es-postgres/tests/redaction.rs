//! What PostgreSQL holds and no longer decodes fails the read with an error that says what
//! is wrong and where, and shows none of the stored values: not in its `Display`, its
//! `Debug`, nor anywhere in its source chain. Payloads come back as JSON text, so this is
//! the text path of the decoder; metadata has its own parse. Stream reads and the global
//! log turn rows into events through the same code, so stream reads stand for both (a log
//! read may wait on other sessions' transactions, which would only slow this down).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::error::Error;

use es_core::{EventStore as _, ExpectedVersion, NewEvent, RawEvent, ReadError, StreamId, Version};
use es_postgres::PgEventStore;
use es_testkit::fixture::AccountEvent;
use futures_util::StreamExt as _;
use serde_json::json;
use sqlx::AssertSqlSafe;

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

#[track_caller]
fn assert_redacted(error: &ReadError, secret: &str, what: &str) {
    let shown = rendered(error);
    assert!(!shown.contains("SECRET"), "the secret shows:\n{shown}");
    assert!(!shown.contains(secret), "the secret shows:\n{shown}");
    assert!(!shown.contains('🔑') && !shown.contains('ä'), "{shown}");
    assert!(shown.contains(what), "{what:?} is missing from:\n{shown}");
}

/// The first item of a typed read of `stream`, which must be an error.
async fn read_error(store: &PgEventStore, stream: &StreamId) -> ReadError {
    let mut read = std::pin::pin!(store.read_stream::<AccountEvent>(stream, Version::INITIAL));
    match read.next().await {
        Some(Err(error)) => error,
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_payloads_fail_without_showing_their_values() {
    let store = common::fresh_store().await;
    let mut n = 0;
    for secret in HOSTILE {
        let cases = [
            (
                RawEvent::new("Deposited", 2, json!({ "amount": secret })),
                "invalid type: string, expected u64",
            ),
            (
                RawEvent::new("Credited", 1, json!({ "cents": [secret] })),
                "invalid type: sequence, expected u64",
            ),
            (
                RawEvent::new("Opened", 2, json!({ "holder": { "name": secret } })),
                "invalid type: map, expected a string",
            ),
            (
                RawEvent::new("Closed", 1, json!({ *secret: secret })),
                "expected an empty object",
            ),
        ];
        for (raw, what) in cases {
            n += 1;
            let stream = StreamId::new("account", &format!("leak{n}")).unwrap();
            let stored = (raw.event_type.clone(), raw.schema_version);
            store
                .append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new(raw)])
                .await
                .unwrap();
            let error = read_error(&store, &stream).await;
            let ReadError::Decode {
                event_type,
                schema_version,
                ..
            } = &error
            else {
                panic!("expected a decode error, got {error:?}");
            };
            assert_eq!((event_type.clone(), *schema_version), stored);
            assert!(error.to_string().contains(&format!("account-leak{n}")));
            assert_redacted(&error, secret, what);
        }
    }

    common::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_metadata_fails_without_showing_its_values() {
    let store = common::fresh_store().await;
    for (n, secret) in HOSTILE.iter().enumerate() {
        let stream = StreamId::new("account", &format!("meta{n}")).unwrap();
        let event = NewEvent::new(AccountEvent::Deposited { amount: 1 });
        store
            .append(&stream, ExpectedVersion::NoStream, vec![event])
            .await
            .unwrap();
        // Only another writer (a migration, a hand-made fix) can leave metadata that is
        // not an object; the store must still not echo it.
        let sql = format!(
            "UPDATE {}.events SET metadata = $1 WHERE stream_id = $2",
            store.schema()
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(json!(secret))
            .bind(stream.as_str())
            .execute(store.pool())
            .await
            .unwrap();
        let error = read_error(&store, &stream).await;
        assert!(
            matches!(&error, ReadError::Metadata { stream: s, .. } if s == &stream),
            "{error:?}"
        );
        assert_redacted(&error, secret, "invalid type: string, expected a map");
    }
    common::drop_schema(store).await;
}
