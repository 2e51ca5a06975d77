//! Crypto-shredding on a store: the behaviours of `es_core::personal::Protected` over a
//! store and a key store, one `pub async fn` each, run on every store with its own key
//! store (see [`personal_contract!`](crate::personal_contract)). They use the customer
//! domain of [`crate::customers`]: a name and an address that are personal data of the
//! customer, and a note whose subject is fixed.
//!
//! Each function takes a fresh, empty protected store and panics with a message saying
//! what broke.

use es_core::personal::{KeyError, KeyId, KeyStore, Protected, Subject};
use es_core::{
    AsOf, EventEnvelope, EventFilter, EventStore as _, ExpectedVersion, NewEvent, Position,
    Projection, ProjectionRunner, RawEvent, Repository, SnapshotPolicy, Store, StreamId, Version,
};
use futures_util::{StreamExt as _, TryStreamExt as _};
use std::time::Duration;

use crate::customers::{Customer, CustomerCommand, CustomerEvent, FORGOTTEN_NAME};

/// The name every case registers, which must never reach storage in clear.
const NAME: &str = "Augusta Ada King";
/// The address every case registers.
const ADDRESS: &str = "12 St James's Square";

/// How long a case waits for a store to deliver what it holds.
const DEADLINE: Duration = Duration::from_secs(60);

fn stream(id: &str) -> StreamId {
    StreamId::new("customer", id).expect("a valid stream id")
}

fn subject(id: &str) -> Subject {
    Subject::new(id).expect("a valid subject")
}

async fn register<S: Store, K: KeyStore>(store: &Protected<S, K>, id: &str) {
    store
        .append(
            &stream(id),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(CustomerEvent::registered(id, NAME, ADDRESS))],
        )
        .await
        .unwrap_or_else(|error| panic!("registering `{id}` failed: {error:?}"));
}

/// The customer's events through every read path: the stream, the log, a subscription,
/// and a lookup by id.
async fn every_read<S: Store, K: KeyStore>(
    store: &Protected<S, K>,
    id: &str,
) -> Vec<(&'static str, Vec<CustomerEvent>)> {
    let events = |envelopes: Vec<EventEnvelope<CustomerEvent>>| -> Vec<CustomerEvent> {
        envelopes.into_iter().map(|e| e.event).collect()
    };
    let by_stream: Vec<_> = store
        .read_stream::<CustomerEvent>(&stream(id), Version::INITIAL)
        .try_collect()
        .await
        .unwrap_or_else(|error| panic!("the stream read failed: {error:?}"));
    // The log may show other streams' events before this one's: a transaction of another
    // test in the database can hold its end back for a moment. Wait for this stream's.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let by_log: Vec<_> = loop {
        let logged = crate::conformance::read_log::<_, CustomerEvent>(
            store,
            Position::START,
            EventFilter::all(),
            0,
        )
        .await;
        let mine: Vec<_> = logged
            .into_iter()
            .filter(|e| e.stream_id == stream(id))
            .collect();
        if mine.len() >= by_stream.len() || tokio::time::Instant::now() >= deadline {
            break mine;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let subscribed: Vec<_> = tokio::time::timeout(
        DEADLINE,
        store
            .subscribe::<CustomerEvent>(Position::START, EventFilter::all())
            .filter(|item| {
                std::future::ready(item.as_ref().map_or(true, |e| e.stream_id == stream(id)))
            })
            .take(by_stream.len())
            .try_collect(),
    )
    .await
    .expect("the subscription delivers the customer's events in time")
    .unwrap_or_else(|error| panic!("the subscription failed: {error:?}"));
    let mut found = Vec::new();
    for envelope in &by_stream {
        found.push(
            store
                .find_event::<CustomerEvent>(envelope.event_id)
                .await
                .unwrap_or_else(|error| panic!("the lookup failed: {error:?}"))
                .expect("the event is found by its id"),
        );
    }
    vec![
        ("read_stream", events(by_stream)),
        ("read_all", events(by_log)),
        ("subscribe", events(subscribed)),
        ("find_event", events(found)),
    ]
}

/// The payloads and snapshot the inner store holds for the customer, as JSON text.
async fn stored_text<S: Store, K: KeyStore>(store: &Protected<S, K>, id: &str) -> String {
    let raw: Vec<EventEnvelope<RawEvent>> = store
        .inner()
        .read_stream(&stream(id), Version::INITIAL)
        .try_collect()
        .await
        .unwrap_or_else(|error| panic!("the raw read failed: {error:?}"));
    let mut text: Vec<String> = raw.iter().map(|e| e.event.payload.to_string()).collect();
    if let Some(snapshot) = store
        .inner()
        .load_snapshot(&stream(id))
        .await
        .unwrap_or_else(|error| panic!("the raw snapshot read failed: {error:?}"))
    {
        text.push(snapshot.state.to_string());
    }
    text.join("\n")
}

fn assert_clear_of_personal_values(text: &str) {
    for value in [NAME, ADDRESS] {
        assert!(
            !text.contains(value),
            "the store holds the personal value `{value}` in clear: {text}"
        );
    }
}

/// What a store accepts through `Protected` every read path gives back identically, and
/// the store underneath holds none of the personal values in clear.
pub async fn personal_fields_read_back_and_are_stored_encrypted<S: Store, K: KeyStore>(
    store: Protected<S, K>,
) {
    register(&store, "c1").await;
    let expected = vec![CustomerEvent::registered("c1", NAME, ADDRESS)];
    for (path, events) in every_read(&store, "c1").await {
        assert_eq!(events, expected, "{path} gives back what was appended");
    }
    let text = stored_text(&store, "c1").await;
    assert_clear_of_personal_values(&text);
    assert!(
        text.contains("es:personal"),
        "the fields are sealed: {text}"
    );
}

/// Once a subject is forgotten, every read path gives the declared replacement in place of
/// its personal values (never an error, never the ciphertext), other subjects' values stay
/// readable, and the forgetting is recorded once, with who and when.
pub async fn forgetting_gives_the_replacement_on_every_read_path<S: Store, K: KeyStore>(
    store: Protected<S, K>,
) {
    register(&store, "c1").await;
    register(&store, "c2").await;
    let first = store
        .forget(&subject("c1"), "ticket 7")
        .await
        .unwrap_or_else(|error| panic!("forget failed: {error:?}"));
    assert_eq!(first.subject, subject("c1"));
    assert_eq!(first.by, "ticket 7");
    let again = store
        .forget(&subject("c1"), "someone else")
        .await
        .unwrap_or_else(|error| panic!("a second forget failed: {error:?}"));
    assert_eq!(again, first, "a repeat returns the first record");
    assert_eq!(
        store.keys().forgotten(&subject("c1")).await.unwrap(),
        Some(first)
    );
    assert_eq!(store.keys().forgotten(&subject("c2")).await.unwrap(), None);

    let forgotten = CustomerEvent::registered("c1", NAME, ADDRESS).forgotten();
    assert_eq!(
        forgotten,
        CustomerEvent::Registered {
            customer_id: "c1".into(),
            name: FORGOTTEN_NAME.into(),
            address: None,
            tier: 1,
        }
    );
    for (path, events) in every_read(&store, "c1").await {
        assert_eq!(
            events,
            std::slice::from_ref(&forgotten),
            "{path} after forgetting"
        );
    }
    for (path, events) in every_read(&store, "c2").await {
        assert_eq!(
            events,
            [CustomerEvent::registered("c2", NAME, ADDRESS)],
            "{path}: another subject is untouched"
        );
    }
}

/// A fixed subject (`subject = "fixed:..."`) is forgotten like any other, and a
/// `forgotten = Default` field then reads as its type's default.
pub async fn a_fixed_subject_is_forgotten_alike<S: Store, K: KeyStore>(store: Protected<S, K>) {
    let note = CustomerEvent::Noted {
        text: "left early".into(),
    };
    store
        .append(
            &stream("desk"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(note.clone())],
        )
        .await
        .unwrap();
    let read = |store: Protected<S, K>| async move {
        store
            .read_stream::<CustomerEvent>(&stream("desk"), Version::INITIAL)
            .map_ok(|e| e.event)
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
    };
    assert_eq!(read(store.clone()).await, std::slice::from_ref(&note));
    store
        .forget(&subject("support-desk"), "desk lead")
        .await
        .unwrap();
    assert_eq!(read(store.clone()).await, [note.forgotten()]);
}

/// Personal data appended for a subject already forgotten is not stored at all: readers
/// see the replacement, and the store holds neither the value nor a key for it.
pub async fn nothing_personal_is_stored_for_a_forgotten_subject<S: Store, K: KeyStore>(
    store: Protected<S, K>,
) {
    store.forget(&subject("c1"), "ops").await.unwrap();
    register(&store, "c1").await;
    assert_clear_of_personal_values(&stored_text(&store, "c1").await);
    assert!(
        store
            .keys()
            .key_for(&subject("c1"))
            .await
            .unwrap()
            .is_none(),
        "a forgotten subject gets no key"
    );
    for (path, events) in every_read(&store, "c1").await {
        assert_eq!(
            events,
            [CustomerEvent::registered("c1", NAME, ADDRESS).forgotten()],
            "{path}"
        );
    }
}

/// A field sealed under a key that the key store never had (events written with another
/// key store, or keys lost) is a read error naming the key, not a forgotten value: read as
/// forgotten, it would show every such value redacted, and a projection rebuilt then
/// would keep the redacted view, though no subject asked.
pub async fn a_key_the_key_store_never_had_is_an_error_not_a_forgotten_value<
    S: Store,
    K: KeyStore,
>(
    store: Protected<S, K>,
) {
    let never = KeyId::new();
    match store.keys().key(never).await {
        Err(KeyError::UnknownKey { key }) => assert_eq!(key, never),
        other => panic!("the key store answered {other:?} for a key it never had"),
    }
    // What another key store's seal looks like: an envelope naming its key.
    let sealed = serde_json::json!({
        "es:personal": 1,
        "key": never.to_string(),
        "nonce": "AAAAAAAAAAAAAAAA",
        "data": "AAAAAAAAAAAAAAAAAAAAAA==",
        "forgotten": FORGOTTEN_NAME,
    });
    let payload = serde_json::json!({
        "customer_id": "c1", "name": sealed, "address": null, "tier": 1,
    });
    store
        .inner()
        .append(
            &stream("c1"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(RawEvent::new("Registered", 1, payload))],
        )
        .await
        .unwrap_or_else(|error| panic!("the raw append failed: {error:?}"));
    let read: Result<Vec<_>, _> = store
        .read_stream::<CustomerEvent>(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await;
    match read {
        Err(error) => {
            // The whole chain, as an error reporter prints it.
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            assert!(
                text.contains(&never.to_string()) && text.contains("not in the key store"),
                "the error names the key and says what is wrong: {text}"
            );
        }
        Ok(events) => panic!("read a field of an unknown key as {events:?}"),
    }
}

/// Retrying an append whose reply was lost (the same event ids) through `Protected` is an
/// idempotent repeat, as it is on the store itself, though the personal fields are
/// encrypted anew.
pub async fn a_repeated_append_with_personal_fields_is_idempotent<S: Store, K: KeyStore>(
    store: Protected<S, K>,
) {
    let events = vec![NewEvent::new(CustomerEvent::registered(
        "c1", NAME, ADDRESS,
    ))];
    let first = store
        .append(&stream("c1"), ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    let again = store
        .append(&stream("c1"), ExpectedVersion::NoStream, events)
        .await
        .unwrap_or_else(|error| panic!("the repeat was refused: {error:?}"));
    assert!(again.duplicate, "the repeat is reported as one");
    assert_eq!(again.version, first.version);
    let stored: Vec<_> = store
        .read_stream::<CustomerEvent>(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "nothing was stored twice");
}

/// A snapshot of an aggregate whose state holds personal values is not stored in clear,
/// and once its subject is forgotten it is no longer used: the aggregate loads from its
/// events, redacted, now and as of an earlier version.
pub async fn snapshots_are_sealed_and_dropped_once_forgotten<S: Store, K: KeyStore>(
    store: Protected<S, K>,
) {
    register(&store, "c1").await;
    let customers = Repository::<Customer, _>::new(store.clone())
        .with_snapshot_policy(SnapshotPolicy::every(1));
    customers
        .execute(
            "c1",
            CustomerCommand::Move {
                address: "Ockham Park".into(),
            },
        )
        .await
        .unwrap();
    assert!(
        store
            .inner()
            .load_snapshot(&stream("c1"))
            .await
            .unwrap()
            .is_some(),
        "a snapshot was taken"
    );
    assert_clear_of_personal_values(&stored_text(&store, "c1").await);
    let loaded = customers.load("c1").await.unwrap();
    assert_eq!(loaded.state.name.as_deref(), Some(NAME));
    assert_eq!(loaded.state.address.as_deref(), Some("Ockham Park"));

    store.forget(&subject("c1"), "ops").await.unwrap();
    let loaded = customers.load("c1").await.unwrap();
    assert_eq!(loaded.state.name.as_deref(), Some(FORGOTTEN_NAME));
    assert_eq!(loaded.state.address, None);
    assert_eq!(loaded.state.events, 2);
    let earlier = customers
        .load_as_of("c1", AsOf::Version(Version::new(1)))
        .await
        .unwrap();
    assert_eq!(earlier.state.name.as_deref(), Some(FORGOTTEN_NAME));
}

/// The names a projection saw.
#[derive(Debug, Default)]
struct Names(Vec<String>);

impl Projection for Names {
    type Event = CustomerEvent;
    type Error = std::convert::Infallible;

    fn name(&self) -> &'static str {
        "personal-names"
    }

    async fn handle(&mut self, envelope: &EventEnvelope<CustomerEvent>) -> Result<(), Self::Error> {
        if let CustomerEvent::Registered { name, .. } = &envelope.event {
            self.0.push(name.clone());
        }
        Ok(())
    }
}

/// A projection rebuilt after a subject is forgotten shows the replacement, and the other
/// subjects' values.
pub async fn a_projection_rebuilt_after_forgetting_shows_the_replacement<S: Store, K: KeyStore>(
    store: Protected<S, K>,
) {
    register(&store, "c1").await;
    register(&store, "c2").await;
    let mut live = ProjectionRunner::in_memory(store.clone(), Names::default());
    catch_up_to(&mut live, 2).await;
    assert_eq!(live.projection().0, [NAME, NAME]);
    store.forget(&subject("c1"), "ops").await.unwrap();
    let mut rebuilt = ProjectionRunner::in_memory(store, Names::default());
    catch_up_to(&mut rebuilt, 2).await;
    assert_eq!(rebuilt.projection().0, [FORGOTTEN_NAME, NAME]);
}

/// Catches `runner` up until its projection saw `names` names (a store may hold the end of
/// its log back for a moment), within the deadline.
async fn catch_up_to<S: Store>(runner: &mut ProjectionRunner<Names, S>, names: usize) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while runner.projection().0.len() < names {
        runner
            .catch_up()
            .await
            .unwrap_or_else(|error| panic!("the catch-up failed: {error:?}"));
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projection saw {} of {names} names",
            runner.projection().0.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
