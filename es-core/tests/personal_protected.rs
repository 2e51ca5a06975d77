//! `Protected` over the in-memory store: personal fields are stored encrypted, every read
//! path gives them back, and once their subject is forgotten every read path gives the
//! declared replacement instead (never an error), snapshots included.
//!
//! Here rather than in es-core's unit tests because es-memory links its own copy of
//! es-core there. The event type implements `DomainEvent` by hand, as the derive's
//! `#[personal]` would.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::time::Duration;

use es_core::personal::{
    Forgotten, KeyError, KeyStore as _, MemoryKeyStore, PersonalField, Protected, Subject,
    SubjectSource,
};
use es_core::{
    Aggregate, AggregateType, AppendError, DecodeError, DomainEvent, EncodeError, EventEnvelope,
    EventFilter, EventStore, ExpectedVersion, NewEvent, Position, Query, QueryItem, RawEvent,
    ReadError, Repository, SnapshotPolicy, SnapshotStore as _, StreamId, Tag, TagError, Version,
};
use es_memory::MemoryEventStore;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
enum CustomerEvent {
    Registered {
        customer_id: String,
        name: String,
        phone: Option<String>,
    },
    Moved {
        customer_id: String,
        city: String,
    },
}

const REGISTERED: &[PersonalField] = &[
    PersonalField {
        key: "name",
        subject: SubjectSource::Field("customer_id"),
        forgotten: Forgotten::Text("(forgotten)"),
    },
    PersonalField {
        key: "phone",
        subject: SubjectSource::Field("customer_id"),
        forgotten: Forgotten::Null,
    },
];

const MOVED: &[PersonalField] = &[PersonalField {
    key: "city",
    subject: SubjectSource::Field("customer_id"),
    forgotten: Forgotten::TypeDefault(|| json!("")),
}];

fn invalid(event_type: &str, error: serde_json::Error) -> DecodeError {
    DecodeError::InvalidPayload {
        event_type: event_type.to_owned(),
        version: 1,
        source: error.into(),
    }
}

impl DomainEvent for CustomerEvent {
    const EVENT_TYPES: &'static [&'static str] = &["Registered", "Moved"];

    fn event_type(&self) -> &str {
        match self {
            Self::Registered { .. } => "Registered",
            Self::Moved { .. } => "Moved",
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Value, EncodeError> {
        Ok(match self {
            Self::Registered {
                customer_id,
                name,
                phone,
            } => json!({ "customer_id": customer_id, "name": name, "phone": phone }),
            Self::Moved { customer_id, city } => {
                json!({ "customer_id": customer_id, "city": city })
            }
        })
    }

    fn decode(event_type: &str, _: u32, payload: Value) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Registered {
            customer_id: String,
            name: String,
            phone: Option<String>,
        }
        #[derive(Deserialize)]
        struct Moved {
            customer_id: String,
            city: String,
        }
        match event_type {
            "Registered" => {
                let r: Registered =
                    serde_json::from_value(payload).map_err(|e| invalid(event_type, e))?;
                Ok(Self::Registered {
                    customer_id: r.customer_id,
                    name: r.name,
                    phone: r.phone,
                })
            }
            "Moved" => {
                let m: Moved =
                    serde_json::from_value(payload).map_err(|e| invalid(event_type, e))?;
                Ok(Self::Moved {
                    customer_id: m.customer_id,
                    city: m.city,
                })
            }
            _ => Err(DecodeError::UnknownEventType {
                event_type: event_type.to_owned(),
            }),
        }
    }

    fn tags(&self) -> Result<Vec<Tag>, TagError> {
        let (Self::Registered { customer_id, .. } | Self::Moved { customer_id, .. }) = self;
        Ok(vec![Tag::new(format!("customer:{customer_id}"))?])
    }

    fn personal_fields(event_type: &str) -> &'static [PersonalField] {
        match event_type {
            "Registered" => REGISTERED,
            "Moved" => MOVED,
            _ => &[],
        }
    }
}

type Store = Protected<MemoryEventStore, MemoryKeyStore>;

fn setup() -> (Store, MemoryEventStore) {
    let inner = MemoryEventStore::new();
    (Protected::new(inner.clone(), MemoryKeyStore::new()), inner)
}

fn registered(id: &str) -> CustomerEvent {
    CustomerEvent::Registered {
        customer_id: id.into(),
        name: "Ada Lovelace".into(),
        phone: Some("+44 7946 0000".into()),
    }
}

fn moved(id: &str) -> CustomerEvent {
    CustomerEvent::Moved {
        customer_id: id.into(),
        city: "Marylebone".into(),
    }
}

const SECRETS: &[&str] = &["Ada", "Lovelace", "7946", "Marylebone"];

fn assert_no_secret(text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "`{secret}` stored in clear: {text}");
    }
}

fn stream(id: &str) -> StreamId {
    StreamId::new("customer", id).unwrap()
}

async fn append(store: &Store, id: &str, events: Vec<CustomerEvent>) {
    let events: Vec<_> = events.into_iter().map(NewEvent::new).collect();
    let committed = store
        .append(&stream(id), ExpectedVersion::Any, events.clone())
        .await
        .unwrap();
    let returned: Vec<_> = committed.events.iter().map(|e| e.event.clone()).collect();
    let given: Vec<_> = events.into_iter().map(|e| e.event).collect();
    assert_eq!(returned, given, "the append returns the caller's events");
}

/// Every read path's view of the log, typed.
async fn every_read(store: &Store, id: &str) -> Vec<Vec<CustomerEvent>> {
    let events = |envelopes: Vec<EventEnvelope<CustomerEvent>>| {
        envelopes.into_iter().map(|e| e.event).collect::<Vec<_>>()
    };
    let by_stream = store
        .read_stream::<CustomerEvent>(&stream(id), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    let by_log = store
        .read_all::<CustomerEvent>(Position::START, EventFilter::all())
        .try_collect()
        .await
        .unwrap();
    let query = Query::from(
        QueryItem::of::<CustomerEvent>().with_tag(Tag::new(format!("customer:{id}")).unwrap()),
    );
    let by_query: Vec<_> = store
        .read_query::<CustomerEvent>(&query, Position::START)
        .try_collect()
        .await
        .unwrap();
    let first = by_query[0].event_id;
    let subscribed: Vec<_> = store
        .subscribe::<CustomerEvent>(Position::START, EventFilter::all())
        .take(by_query.len())
        .try_collect()
        .await
        .unwrap();
    let found = store
        .find_event::<CustomerEvent>(first)
        .await
        .unwrap()
        .unwrap();
    vec![
        events(by_stream),
        events(by_log),
        events(by_query),
        events(subscribed),
        vec![found.event],
    ]
}

async fn stored_text(inner: &MemoryEventStore) -> String {
    let raw: Vec<EventEnvelope<RawEvent>> = inner
        .read_all(Position::START, EventFilter::all())
        .try_collect()
        .await
        .unwrap();
    raw.iter()
        .map(|e| e.event.payload.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "current_thread")]
async fn every_read_path_gives_back_what_was_appended_and_the_inner_store_holds_no_plaintext() {
    let (store, inner) = setup();
    append(&store, "c1", vec![registered("c1"), moved("c1")]).await;
    for read in every_read(&store, "c1").await {
        let expected = [registered("c1"), moved("c1")];
        assert_eq!(read, expected[..read.len()], "a read path differs");
    }
    assert_no_secret(&stored_text(&inner).await);
    // The declared tags reached the inner store with the raw events.
    let raw: Vec<EventEnvelope<RawEvent>> = inner
        .read_stream(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert!(
        raw[0]
            .metadata
            .tags
            .contains(&Tag::new("customer:c1").unwrap())
    );
    // A raw reader through the store sees the values in clear.
    let raw: Vec<EventEnvelope<RawEvent>> = store
        .read_stream(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(raw[0].event.payload["name"], "Ada Lovelace");
}

#[tokio::test(flavor = "current_thread")]
async fn after_forget_every_read_path_gives_the_replacement() {
    let (store, _) = setup();
    append(&store, "c1", vec![registered("c1"), moved("c1")]).await;
    append(&store, "c2", vec![registered("c2")]).await;
    let record = store
        .forget(&Subject::new("c1").unwrap(), "ticket 7")
        .await
        .unwrap();
    assert_eq!(record.by, "ticket 7");

    let forgotten = [
        CustomerEvent::Registered {
            customer_id: "c1".into(),
            name: "(forgotten)".into(),
            phone: None,
        },
        CustomerEvent::Moved {
            customer_id: "c1".into(),
            city: String::new(),
        },
    ];
    for read in every_read(&store, "c1").await {
        assert_eq!(read[0], forgotten[0]);
        if read.len() > 1 {
            assert_eq!(read[1], forgotten[1]);
        }
    }
    // Other subjects are untouched.
    let c2: Vec<EventEnvelope<CustomerEvent>> = store
        .read_stream(&stream("c2"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(c2[0].event, registered("c2"));
    // Raw readers get the declared replacement too.
    let raw: Vec<EventEnvelope<RawEvent>> = store
        .read_stream(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(raw[0].event.payload["name"], "(forgotten)");
}

#[tokio::test(flavor = "current_thread")]
async fn a_subject_forgotten_before_the_append_gets_nothing_stored() {
    let (store, inner) = setup();
    store
        .forget(&Subject::new("c9").unwrap(), "gdpr")
        .await
        .unwrap();
    append(&store, "c9", vec![registered("c9")]).await;
    let text = stored_text(&inner).await;
    assert_no_secret(&text);
    assert!(!text.contains("\"data\""), "{text}");
    let read: Vec<EventEnvelope<CustomerEvent>> = store
        .read_stream(&stream("c9"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert!(
        matches!(&read[0].event, CustomerEvent::Registered { name, .. } if name == "(forgotten)")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_ciphertext_moved_to_another_field_is_refused_as_corrupt() {
    let (store, inner) = setup();
    append(&store, "c1", vec![registered("c1")]).await;
    let raw: Vec<EventEnvelope<RawEvent>> = inner
        .read_stream(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    let mut payload = raw[0].event.payload.clone();
    payload["phone"] = payload["name"].clone();
    inner
        .append(
            &stream("c1"),
            ExpectedVersion::Any,
            vec![NewEvent::new(RawEvent::new("Registered", 1, payload))],
        )
        .await
        .unwrap();
    let read: Vec<Result<EventEnvelope<CustomerEvent>, ReadError>> = store
        .read_stream(&stream("c1"), Version::INITIAL)
        .collect()
        .await;
    assert!(read[0].is_ok());
    let error = read[1].as_ref().unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, ReadError::Corrupt { .. }), "{text}");
    assert!(
        text.contains("phone") && text.contains("customer-c1"),
        "{text}"
    );
    assert_no_secret(&text);
}

#[tokio::test(flavor = "current_thread")]
async fn an_event_without_its_subject_is_refused_and_nothing_is_stored() {
    let (store, inner) = setup();
    let event = CustomerEvent::Registered {
        customer_id: String::new(),
        name: "Ada".into(),
        phone: None,
    };
    let error = store
        .append(
            &stream("c0"),
            ExpectedVersion::Any,
            vec![NewEvent::new(event)],
        )
        .await
        .unwrap_err();
    assert!(matches!(error, AppendError::Encode { .. }), "{error}");
    assert!(inner.is_empty());
}

#[derive(Debug, Clone)]
enum CustomerCommand {
    Register { name: String },
    Move { city: String },
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, AggregateType)]
#[aggregate(name = "customer", command = CustomerCommand, event = CustomerEvent, error = Never)]
struct Customer {
    id: String,
    name: String,
    city: String,
}

impl Aggregate for Customer {
    async fn handle(&self, command: CustomerCommand, _: &()) -> Result<Vec<CustomerEvent>, Never> {
        Ok(vec![match command {
            CustomerCommand::Register { name } => CustomerEvent::Registered {
                customer_id: "c1".into(),
                name,
                phone: None,
            },
            CustomerCommand::Move { city } => CustomerEvent::Moved {
                customer_id: "c1".into(),
                city,
            },
        }])
    }

    fn apply(&mut self, event: &CustomerEvent) {
        match event {
            CustomerEvent::Registered {
                customer_id, name, ..
            } => {
                self.id.clone_from(customer_id);
                self.name.clone_from(name);
            }
            CustomerEvent::Moved { city, .. } => self.city.clone_from(city),
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn snapshots_are_encrypted_and_unusable_once_a_subject_is_forgotten() {
    let (store, inner) = setup();
    let customers = Repository::<Customer, _>::new(store.clone())
        .with_snapshot_policy(SnapshotPolicy::every(2));
    customers
        .execute(
            "c1",
            CustomerCommand::Register {
                name: "Ada Lovelace".into(),
            },
        )
        .await
        .unwrap();
    customers
        .execute(
            "c1",
            CustomerCommand::Move {
                city: "Marylebone".into(),
            },
        )
        .await
        .unwrap();
    let saved = inner.load_snapshot(&stream("c1")).await.unwrap().unwrap();
    assert_eq!(saved.version, Version::new(2));
    assert_no_secret(&saved.state.to_string());
    let opened = store.load_snapshot(&stream("c1")).await.unwrap().unwrap();
    assert_eq!(opened.state["name"], "Ada Lovelace");
    assert_eq!(customers.load("c1").await.unwrap().state.city, "Marylebone");

    store
        .forget(&Subject::new("c1").unwrap(), "ticket 8")
        .await
        .unwrap();
    assert_eq!(store.load_snapshot(&stream("c1")).await.unwrap(), None);
    let loaded = customers.load("c1").await.unwrap();
    assert_eq!(
        loaded.state,
        Customer {
            id: "c1".into(),
            name: "(forgotten)".into(),
            city: String::new(),
        }
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_subject_forgotten_elsewhere_is_unreadable_once_the_cache_expires() {
    let inner = MemoryEventStore::new();
    let keys = MemoryKeyStore::new();
    let store = Protected::new(inner, keys.clone()).with_key_cache_ttl(Duration::ZERO);
    append(&store, "c1", vec![registered("c1")]).await;
    // Forgotten through the key store (another process, say), not through `store`.
    keys.forget(&Subject::new("c1").unwrap(), "ops")
        .await
        .unwrap();
    let read: Vec<EventEnvelope<CustomerEvent>> = store
        .read_stream(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert!(
        matches!(&read[0].event, CustomerEvent::Registered { name, .. } if name == "(forgotten)")
    );
}

fn snapshot(id: &str, version: u64, state: Value) -> es_core::Snapshot {
    es_core::Snapshot {
        stream_id: stream(id),
        version: Version::new(version),
        schema_version: 1,
        state,
        taken_at: chrono::Utc::now(),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_snapshot_needs_every_subject_of_its_stream() {
    let (store, inner) = setup();
    // One stream holding two subjects' data.
    append(&store, "shared", vec![registered("a"), registered("b")]).await;
    let state = json!({ "names": ["Ada Lovelace", "Ada Lovelace"] });
    store
        .save_snapshot(snapshot("shared", 2, state.clone()))
        .await
        .unwrap();
    let sealed = inner
        .load_snapshot(&stream("shared"))
        .await
        .unwrap()
        .unwrap();
    assert_no_secret(&sealed.state.to_string());
    assert_eq!(sealed.state["shares"].as_array().unwrap().len(), 2);
    let opened = store
        .load_snapshot(&stream("shared"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(opened.state, state);

    // Moved to another version, it does not open.
    let mut moved = sealed.clone();
    moved.version = Version::new(3);
    inner.save_snapshot(moved).await.unwrap();
    assert_eq!(store.load_snapshot(&stream("shared")).await.unwrap(), None);

    // Either subject forgotten is enough.
    let (store, _) = setup();
    append(&store, "shared", vec![registered("a"), registered("b")]).await;
    store
        .save_snapshot(snapshot("shared", 2, state.clone()))
        .await
        .unwrap();
    store
        .forget(&Subject::new("b").unwrap(), "ops")
        .await
        .unwrap();
    assert_eq!(store.load_snapshot(&stream("shared")).await.unwrap(), None);
    // And a snapshot whose subject was forgotten since its events were written (the state
    // may hold its data) is not saved at all.
    append(&store, "late", vec![registered("c")]).await;
    store
        .forget(&Subject::new("c").unwrap(), "ops")
        .await
        .unwrap();
    store
        .save_snapshot(snapshot("late", 1, state))
        .await
        .unwrap();
    assert_eq!(
        store.inner().load_snapshot(&stream("late")).await.unwrap(),
        None
    );
}

/// A save reads only the events after the stream's last snapshot: the keys before it are
/// in that snapshot's shares (or there were none, if it is stored as it is). Shown by
/// replacing the sealed snapshot with one stored as it is: the next save believes it and
/// seals under the newer subject's key alone, where a read of the whole stream would find
/// all three.
#[tokio::test(flavor = "current_thread")]
async fn a_snapshot_save_reads_only_the_events_since_the_last_snapshot() {
    let (store, inner) = setup();
    let state = json!({ "names": ["Ada Lovelace"] });
    // Saves a snapshot of `shared` at `version` and counts the shares it was sealed with.
    let shares = |version: u64| {
        let (store, inner, state) = (store.clone(), inner.clone(), state.clone());
        async move {
            store
                .save_snapshot(snapshot("shared", version, state))
                .await
                .unwrap();
            let sealed = inner
                .load_snapshot(&stream("shared"))
                .await
                .unwrap()
                .unwrap();
            sealed.state["shares"].as_array().unwrap().len()
        }
    };
    append(&store, "shared", vec![registered("a"), registered("b")]).await;
    assert_eq!(shares(2).await, 2);
    append(&store, "shared", vec![registered("c")]).await;
    assert_eq!(
        shares(3).await,
        3,
        "the shares of the snapshot before, and the key of the event since"
    );

    inner
        .save_snapshot(snapshot("shared", 3, json!({ "stored": "as it is" })))
        .await
        .unwrap();
    append(&store, "shared", vec![registered("d")]).await;
    assert_eq!(
        shares(4).await,
        1,
        "only the event after the last snapshot was read"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_snapshot_of_a_stream_without_personal_data_is_stored_as_it_is() {
    let (store, inner) = setup();
    inner
        .append(
            &stream("plain"),
            ExpectedVersion::Any,
            vec![NewEvent::new(RawEvent::new("Noted", 1, json!({ "n": 1 })))],
        )
        .await
        .unwrap();
    store
        .save_snapshot(snapshot("plain", 1, json!({ "n": 1 })))
        .await
        .unwrap();
    let stored = inner
        .load_snapshot(&stream("plain"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, json!({ "n": 1 }));
    assert_eq!(
        store
            .load_snapshot(&stream("plain"))
            .await
            .unwrap()
            .unwrap()
            .state,
        json!({ "n": 1 })
    );
}

#[test]
fn protected_is_a_complete_store_when_its_inner_store_is() {
    fn complete<S: es_core::Store>() {}
    complete::<Store>();
}

#[derive(Debug, Default)]
struct Names(Vec<String>);

impl es_core::Projection for Names {
    type Event = CustomerEvent;
    type Error = std::convert::Infallible;

    fn name(&self) -> &'static str {
        "names"
    }

    async fn handle(&mut self, envelope: &EventEnvelope<CustomerEvent>) -> Result<(), Self::Error> {
        if let CustomerEvent::Registered { name, .. } = &envelope.event {
            self.0.push(name.clone());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_projection_rebuilt_after_forget_sees_the_replacement() {
    let (store, _) = setup();
    append(&store, "c1", vec![registered("c1")]).await;
    append(&store, "c2", vec![registered("c2")]).await;
    let mut before = es_core::ProjectionRunner::in_memory(store.clone(), Names::default());
    before.catch_up().await.unwrap();
    assert_eq!(before.projection().0, ["Ada Lovelace", "Ada Lovelace"]);

    store
        .forget(&Subject::new("c1").unwrap(), "ops")
        .await
        .unwrap();
    let mut rebuilt = es_core::ProjectionRunner::in_memory(store, Names::default());
    rebuilt.catch_up().await.unwrap();
    assert_eq!(rebuilt.projection().0, ["(forgotten)", "Ada Lovelace"]);
}

#[tokio::test(flavor = "current_thread")]
async fn raw_appends_of_known_types_are_encrypted_and_stored_events_copy_as_they_are() {
    let (store, inner) = setup();
    let store = store.with_events::<CustomerEvent>();
    let raw = RawEvent::from_event(&registered("c1")).unwrap();
    store
        .append(
            &stream("c1"),
            ExpectedVersion::Any,
            vec![NewEvent::new(raw)],
        )
        .await
        .unwrap();
    assert_no_secret(&stored_text(&inner).await);

    // A stored event appended again as it is stays readable.
    let stored: Vec<EventEnvelope<RawEvent>> = inner
        .read_stream(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    store
        .append(
            &stream("c1"),
            ExpectedVersion::Any,
            vec![NewEvent::new(stored[0].event.clone())],
        )
        .await
        .unwrap();
    let read: Vec<EventEnvelope<CustomerEvent>> = store
        .read_stream(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(read[1].event, registered("c1"));
}

/// A key store whose `key` can be held, once armed, after it fetched the key and before
/// it returns: a read in flight while a forget runs.
#[derive(Clone)]
struct Gated {
    inner: MemoryKeyStore,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    entered: std::sync::Arc<tokio::sync::Notify>,
    gate: std::sync::Arc<tokio::sync::Notify>,
    /// How many times `key` was asked.
    lookups: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl es_core::personal::KeyStore for Gated {
    async fn key_for(
        &self,
        subject: &Subject,
    ) -> Result<Option<(es_core::personal::KeyId, es_core::personal::DataKey)>, KeyError> {
        self.inner.key_for(subject).await
    }

    async fn key(
        &self,
        id: es_core::personal::KeyId,
    ) -> Result<Option<es_core::personal::DataKey>, KeyError> {
        self.lookups
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let key = self.inner.key(id).await;
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.entered.notify_one();
            self.gate.notified().await;
        }
        key
    }

    async fn forget(
        &self,
        subject: &Subject,
        by: &str,
    ) -> Result<es_core::personal::Forgetting, KeyError> {
        self.inner.forget(subject, by).await
    }

    async fn forgotten(
        &self,
        subject: &Subject,
    ) -> Result<Option<es_core::personal::Forgetting>, KeyError> {
        self.inner.forgotten(subject).await
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_key_fetched_while_forget_runs_is_not_cached_after_it() {
    let inner = MemoryEventStore::new();
    let keys = Gated {
        inner: MemoryKeyStore::new(),
        armed: std::sync::Arc::default(),
        entered: std::sync::Arc::default(),
        gate: std::sync::Arc::default(),
        lookups: std::sync::Arc::default(),
    };
    let writer = Protected::new(inner.clone(), keys.clone());
    writer
        .append(
            &stream("c1"),
            ExpectedVersion::Any,
            vec![NewEvent::new(registered("c1"))],
        )
        .await
        .unwrap();
    // A store with nothing cached: its read fetches the key, and is held there.
    let store = Protected::new(inner, keys.clone());
    keys.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .read_stream::<CustomerEvent>(&stream("c1"), Version::INITIAL)
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
        })
    };
    keys.entered.notified().await;
    store
        .forget(&Subject::new("c1").unwrap(), "ops")
        .await
        .unwrap();
    keys.gate.notify_one();
    // The read in flight began before the forget: it may see the value.
    reader.await.unwrap();
    let later: Vec<EventEnvelope<CustomerEvent>> = store
        .read_stream(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        later[0].event,
        CustomerEvent::Registered {
            customer_id: "c1".into(),
            name: "(forgotten)".into(),
            phone: None,
        },
        "a key fetched before the forget was kept in the cache after it"
    );
}

/// Event types as the derive writes them, for the cases where readers and writers differ.
mod shapes {
    use std::collections::BTreeMap;

    use es_core::DomainEvent;

    pub(crate) mod old {
        use super::DomainEvent;
        #[derive(Debug, Clone, PartialEq, DomainEvent)]
        pub(crate) enum CustomerEvent {
            #[event(name = "CustomerRegistered")]
            Registered {
                customer_id: String,
                #[personal(subject = customer_id, forgotten = "(forgotten)")]
                name: String,
            },
        }
    }

    pub(crate) mod renamed {
        use super::DomainEvent;
        #[derive(Debug, Clone, PartialEq, DomainEvent)]
        pub(crate) enum CustomerEvent {
            #[event(name = "Registered", alias = "CustomerRegistered")]
            Registered {
                customer_id: String,
                #[personal(subject = customer_id, forgotten = "(forgotten)")]
                name: String,
            },
        }
    }

    pub(crate) mod v2 {
        use super::DomainEvent;
        use es_core::{RawEvent, UpcastError};

        #[allow(clippy::unnecessary_wraps, reason = "an upcaster's signature")]
        fn from_v1(mut raw: RawEvent) -> Result<RawEvent, UpcastError> {
            if let Some(object) = raw.payload.as_object_mut() {
                let name = object.remove("name").unwrap_or_default();
                object.insert("full_name".into(), name);
            }
            raw.schema_version = 2;
            Ok(raw)
        }

        #[derive(Debug, Clone, PartialEq, DomainEvent)]
        pub(crate) enum CustomerEvent {
            #[event(name = "CustomerRegistered", version = 2, upcast(from = 1, with = from_v1))]
            Registered {
                customer_id: String,
                #[personal(subject = customer_id, forgotten = "(forgotten)")]
                full_name: String,
            },
        }
    }

    #[derive(Debug, Clone, PartialEq, DomainEvent)]
    pub(crate) enum Profile {
        Updated {
            customer_id: String,
            #[personal(subject = customer_id, forgotten = Default)]
            attributes: BTreeMap<String, String>,
            note: BTreeMap<String, String>,
            #[personal(subject = customer_id)]
            phone: Option<String>,
        },
    }

    #[derive(Debug, Clone, PartialEq, DomainEvent)]
    pub(crate) enum Contact {
        Noted {
            customer_id: Option<String>,
            #[personal(subject = customer_id)]
            phone: Option<String>,
        },
    }
}

async fn forgotten_store_of_old_events() -> (Store, MemoryEventStore) {
    let (store, inner) = setup();
    store
        .append(
            &stream("c1"),
            ExpectedVersion::Any,
            vec![NewEvent::new(shapes::old::CustomerEvent::Registered {
                customer_id: "c1".into(),
                name: "Ada Lovelace".into(),
            })],
        )
        .await
        .unwrap();
    store
        .forget(&Subject::new("c1").unwrap(), "ops")
        .await
        .unwrap();
    (store, inner)
}

#[tokio::test(flavor = "current_thread")]
async fn after_forget_an_alias_an_older_version_or_a_raw_reader_sees_the_stored_replacement() {
    let (store, inner) = forgotten_store_of_old_events().await;
    let renamed: Vec<EventEnvelope<shapes::renamed::CustomerEvent>> = store
        .read_stream(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        renamed[0].event,
        shapes::renamed::CustomerEvent::Registered {
            customer_id: "c1".into(),
            name: "(forgotten)".into()
        }
    );
    let upcast: Vec<EventEnvelope<shapes::v2::CustomerEvent>> = store
        .read_stream(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        upcast[0].event,
        shapes::v2::CustomerEvent::Registered {
            customer_id: "c1".into(),
            full_name: "(forgotten)".into()
        }
    );
    // A fresh store over the same keys that was never told the type (a tool reading raw
    // events).
    let fresh = Protected::new(inner, store.keys().clone());
    let raw: Vec<EventEnvelope<RawEvent>> = fresh
        .read_stream(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(raw[0].event.payload["name"], "(forgotten)");
}

fn profile(id: &str, attributes: &[(&str, &str)], note: &[(&str, &str)]) -> shapes::Profile {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    shapes::Profile::Updated {
        customer_id: id.into(),
        attributes: map(attributes),
        note: map(note),
        phone: None,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn user_data_shaped_like_an_envelope_is_sealed_when_personal_and_read_back_as_data() {
    let (store, inner) = setup();
    // A personal map holding the reserved key, and one holding a whole envelope's shape.
    let events = vec![
        profile(
            "c1",
            &[("es:personal", "x"), ("address", "12 Marylebone Road")],
            &[],
        ),
        profile("c1", &[("es:personal", "1"), ("key", "Lovelace")], &[]),
        profile("c1", &[], &[("es:personal", "1")]),
    ];
    store
        .append(
            &stream("c1"),
            ExpectedVersion::Any,
            events.iter().cloned().map(NewEvent::new).collect(),
        )
        .await
        .unwrap();
    assert_no_secret(&stored_text(&inner).await);
    let read: Vec<EventEnvelope<shapes::Profile>> = store
        .read_stream(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    let read: Vec<_> = read.into_iter().map(|e| e.event).collect();
    assert_eq!(read, events);
}

#[tokio::test(flavor = "current_thread")]
async fn a_none_personal_value_is_stored_as_null_and_needs_no_subject() {
    let (store, inner) = setup();
    // No subject at all: nothing personal to seal.
    let anonymous = shapes::Contact::Noted {
        customer_id: None,
        phone: None,
    };
    store
        .append(
            &stream("c0"),
            ExpectedVersion::Any,
            vec![NewEvent::new(anonymous.clone())],
        )
        .await
        .unwrap();
    let read: Vec<EventEnvelope<shapes::Contact>> = store
        .read_stream(&stream("c0"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(read[0].event, anonymous);
    // With a subject, a `None` is stored as `null`, not sealed.
    let no_phone = CustomerEvent::Registered {
        customer_id: "c1".into(),
        name: "Ada".into(),
        phone: None,
    };
    append(&store, "c1", vec![no_phone]).await;
    let raw: Vec<EventEnvelope<RawEvent>> = inner
        .read_stream(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(raw[0].event.payload["phone"], Value::Null, "stored as null");
    assert!(raw[0].event.payload["name"].is_object(), "sealed");
}

mod misfit {
    use es_core::DomainEvent;

    #[derive(Debug, Clone, PartialEq, DomainEvent)]
    pub(crate) enum CustomerEvent {
        Registered {
            customer_id: String,
            #[personal(subject = customer_id, forgotten = "(forgotten)")]
            name: String,
            #[personal(subject = customer_id, forgotten = "(forgotten)")]
            age: u32,
        },
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_replacement_that_does_not_decode_is_refused_at_the_first_append() {
    let (store, inner) = setup();
    let event = misfit::CustomerEvent::Registered {
        customer_id: "c1".into(),
        name: "Ada Lovelace".into(),
        age: 36,
    };
    for _ in 0..2 {
        let error = store
            .append(
                &stream("c1"),
                ExpectedVersion::Any,
                vec![NewEvent::new(event.clone())],
            )
            .await
            .unwrap_err();
        assert!(matches!(error, AppendError::Encode { .. }), "{error}");
        let text = format!("{error}: {}", std::error::Error::source(&error).unwrap());
        let text = format!(
            "{text}: {}",
            std::error::Error::source(std::error::Error::source(&error).unwrap()).unwrap()
        );
        assert!(
            text.contains("Registered") && text.contains("`age`") && !text.contains("`name`"),
            "{text}"
        );
        assert!(text.contains("forgotten = "), "{text}");
        assert_no_secret(&text);
    }
    assert!(inner.is_empty(), "nothing stored");
    // Fitting replacements pass, and are checked once.
    append(&store, "c2", vec![registered("c2"), registered("c3")]).await;
}

/// An event whose encoding is not the shape its personal fields declare (as a
/// `#[serde(into)]` or a hand-written `Serialize` may make it).
#[derive(Debug, Clone, PartialEq)]
enum Misshapen {
    /// Writes the personal `name` under another key.
    Renamed,
    /// Writes no subject field.
    NoSubject,
    /// Writes a text, not an object.
    Text,
}

const NAME: &[PersonalField] = &[PersonalField {
    key: "name",
    subject: SubjectSource::Field("customer_id"),
    forgotten: Forgotten::Text("(forgotten)"),
}];

impl DomainEvent for Misshapen {
    const EVENT_TYPES: &'static [&'static str] = &["Renamed", "NoSubject", "Text"];

    fn event_type(&self) -> &str {
        match self {
            Self::Renamed => "Renamed",
            Self::NoSubject => "NoSubject",
            Self::Text => "Text",
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Value, EncodeError> {
        Ok(match self {
            Self::Renamed => json!({ "customer_id": "c1", "full_name": "Ada Lovelace" }),
            Self::NoSubject => json!({ "name": "Ada Lovelace" }),
            Self::Text => json!("Ada Lovelace"),
        })
    }

    fn decode(event_type: &str, _: u32, _: Value) -> Result<Self, DecodeError> {
        match event_type {
            "Renamed" => Ok(Self::Renamed),
            "NoSubject" => Ok(Self::NoSubject),
            "Text" => Ok(Self::Text),
            _ => Err(DecodeError::UnknownEventType {
                event_type: event_type.to_owned(),
            }),
        }
    }

    fn personal_fields(_: &str) -> &'static [PersonalField] {
        NAME
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_typed_payload_not_of_the_declared_shape_is_refused_and_nothing_is_stored() {
    let (store, inner) = setup();
    for (event, key) in [
        (Misshapen::Renamed, "`name`"),
        (Misshapen::NoSubject, "`customer_id`"),
        (Misshapen::Text, "not an object"),
    ] {
        let error = store
            .append(
                &stream("c1"),
                ExpectedVersion::Any,
                vec![NewEvent::new(event.clone())],
            )
            .await
            .unwrap_err();
        assert!(matches!(error, AppendError::Encode { .. }), "{error}");
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(next) = source {
            text = format!("{text}: {next}");
            source = next.source();
        }
        assert!(text.contains(key), "{event:?}: {text}");
        assert_no_secret(&text);
    }
    assert!(inner.is_empty(), "{}", stored_text(&inner).await);
}

#[tokio::test(flavor = "current_thread")]
async fn a_raw_copy_of_a_type_read_sealed_but_undeclared_is_refused_until_declared() {
    let (store, inner) = setup();
    append(&store, "c1", vec![registered("c1")]).await;
    // A tool in another process: a fresh store that was never told the types.
    let tool = Protected::new(inner.clone(), store.keys().clone());
    let read: Vec<EventEnvelope<RawEvent>> = tool
        .read_stream(&stream("c1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(read[0].event.payload["name"], "Ada Lovelace");
    let copy = || vec![NewEvent::new(read[0].event.clone())];
    let error = tool
        .append(&stream("copy"), ExpectedVersion::Any, copy())
        .await
        .unwrap_err();
    assert!(matches!(error, AppendError::Encode { .. }), "{error}");
    let text = format!("{:?}", std::error::Error::source(&error));
    assert!(
        text.contains("Registered") && text.contains("with_events"),
        "{text}"
    );
    assert_no_secret(&text);
    assert_no_secret(&stored_text(&inner).await);
    // Declared, the copy is sealed.
    let tool = tool.with_events::<CustomerEvent>();
    tool.append(&stream("copy"), ExpectedVersion::Any, copy())
        .await
        .unwrap();
    assert_no_secret(&stored_text(&inner).await);
}

/// Reading a forgotten subject's events asks the key store once for its key, not once per
/// event (on PostgreSQL each ask is a round trip): that a key is gone is cached too.
#[tokio::test(flavor = "current_thread")]
async fn a_forgotten_key_is_asked_for_once_not_per_event() {
    let keys = Gated {
        inner: MemoryKeyStore::new(),
        armed: std::sync::Arc::default(),
        entered: std::sync::Arc::default(),
        gate: std::sync::Arc::default(),
        lookups: std::sync::Arc::default(),
    };
    let store = Protected::new(MemoryEventStore::new(), keys.clone());
    let events = (0..10).map(|_| NewEvent::new(registered("c1"))).collect();
    store
        .append(&stream("c1"), ExpectedVersion::Any, events)
        .await
        .unwrap();
    store
        .forget(&Subject::new("c1").unwrap(), "ops")
        .await
        .unwrap();
    let before = keys.lookups.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..2 {
        let read: Vec<_> = store
            .read_stream::<CustomerEvent>(&stream("c1"), Version::INITIAL)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(read.len(), 10);
    }
    assert_eq!(
        keys.lookups.load(std::sync::atomic::Ordering::SeqCst) - before,
        1,
        "the gone key is asked for once"
    );
}
