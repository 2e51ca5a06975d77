//! The `es.decision` span: its fields and the outcome it records. A test binary of its
//! own, with one test: a subscriber set for one thread misses spans whose callsite
//! another test's thread registers at the same moment, so no other test may run beside it.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use es_core::{
    Decider, Decision, DecisionState, DomainEvent, EventStore as _, ExpectedVersion, Metadata,
    NewEvent, Query, QueryItem, RetryPolicy, StreamId, Tag,
};
use es_memory::MemoryEventStore;
use futures_util::FutureExt as _;

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum NameEvent {
    Claimed { name: String },
}

/// Whether a name is claimed.
struct Claims(Tag, bool);

impl DecisionState for Claims {
    type Event = NameEvent;

    fn query(&self) -> Query {
        QueryItem::of::<NameEvent>().with_tag(self.0.clone()).into()
    }

    fn apply(&mut self, _: &NameEvent) {
        self.1 = true;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the name is taken")]
struct Taken;

/// Claims a name; with `rival`, a rival claims it first each time it is decided.
struct Claim {
    name: Tag,
    rival: Option<MemoryEventStore>,
}

impl Decision for Claim {
    type State = Claims;
    type Event = NameEvent;
    type Error = Taken;

    fn state(&self) -> Claims {
        Claims(self.name.clone(), false)
    }

    fn stream(&self) -> StreamId {
        StreamId::new("claims", self.name.value()).unwrap()
    }

    fn decide(&self, claims: &Claims) -> Result<Vec<NameEvent>, Taken> {
        if let Some(store) = &self.rival {
            // Behind the decider's back (the memory store answers at once): the append
            // that follows then finds an event its query selects.
            let rival = NewEvent::new(NameEvent::Claimed {
                name: "rival".into(),
            })
            .with_metadata(Metadata::new().with_tag(self.name.clone()));
            let stream = StreamId::new("rivals", "1").unwrap();
            store
                .append(&stream, ExpectedVersion::Any, vec![rival])
                .now_or_never()
                .unwrap()
                .unwrap();
            return Ok(vec![NameEvent::Claimed {
                name: self.name.value().into(),
            }]);
        }
        if claims.1 {
            return Err(Taken);
        }
        Ok(vec![NameEvent::Claimed {
            name: self.name.value().into(),
        }])
    }
}

/// What the spans recorded, by span: id, name and fields.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(u64, String, Fields)>>>);

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(
        &self,
        attributes: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        let name = attributes.metadata().name().to_owned();
        self.0.lock().unwrap().push((id.into_u64(), name, fields));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut spans = self.0.lock().unwrap();
        if let Some((.., fields)) = spans.iter_mut().rev().find(|(n, ..)| *n == id.into_u64()) {
            values.record(fields);
        }
    }
}

#[test]
fn each_decision_runs_in_a_span_with_its_outcome() {
    use tracing_subscriber::layer::SubscriberExt as _;

    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let first_event = tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = MemoryEventStore::new();
            let decider = Decider::new(store.clone()).with_retry_policy(
                RetryPolicy::default()
                    .with_max_attempts(3)
                    .with_backoff(Duration::ZERO, Duration::ZERO),
            );
            let ada = Tag::pair("name", "ada").unwrap();
            let claim = |rival| Claim {
                name: ada.clone(),
                rival,
            };
            let first = decider.execute(&claim(None)).await.unwrap();
            // The derive declares no tags: tag a claim by hand, which the next sees.
            let tagged = NewEvent::new(NameEvent::Claimed { name: "ada".into() })
                .with_metadata(Metadata::new().with_tag(ada.clone()));
            let stream = StreamId::new("claims", "ada").unwrap();
            store
                .append(&stream, ExpectedVersion::Any, vec![tagged])
                .await
                .unwrap();
            decider.execute(&claim(None)).await.unwrap_err();
            decider
                .execute(&claim(Some(store.clone())))
                .await
                .unwrap_err();
            first.events[0].event_id
        })
    });

    let spans = spans.0.lock().unwrap();
    let decisions: Vec<&BTreeMap<String, String>> = spans
        .iter()
        .filter(|(_, name, _)| name == "es.decision")
        .map(|(.., fields)| &fields.0)
        .collect();
    let seen: Vec<(&str, &str, &str)> = decisions
        .iter()
        .map(|f| {
            (
                f["stream"].as_str(),
                f["outcome"].as_str(),
                f["retries"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("claims-ada", "committed", "0"),
            ("claims-ada", "rejected", "0"),
            ("claims-ada", "conflict", "2"),
        ]
    );
    let query = &decisions[0]["query"];
    assert_eq!(query, "(types Claimed, tags name:…)");
    // The caller gave no command id: the span names the one drawn for the execution,
    // which its event ids derive from.
    let command_id: uuid::Uuid = decisions[0]["command_id"].parse().unwrap();
    let stream = StreamId::new("claims", "ada").unwrap();
    assert_eq!(
        es_core::CommandContext::new()
            .with_command_id(command_id)
            .event_id(&stream, 0),
        first_event
    );
}
