//! [`Metadata`]: who and what caused an event (correlation, causation, actor, trace
//! context and the application's own entries), carried beside it in the store.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Who and what caused an event, carried beside it in the store.
///
/// Command execution fills in the causation id (the command's id) and the correlation id
/// (the first command's id of a flow, carried from event to command to event); the actor and
/// the free-form `user` map come from the caller.
///
/// ```
/// use es_core::Metadata;
/// use uuid::Uuid;
///
/// let correlation = Uuid::now_v7();
/// let metadata = Metadata::new()
///     .with_correlation_id(correlation)
///     .with_actor("ada")
///     .with_user("tenant", "acme");
/// assert_eq!(metadata.correlation_id, Some(correlation));
/// assert_eq!(metadata.user["tenant"], "acme");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// The id shared by everything one business flow caused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The id of the command or event that directly caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Who caused the event (a user, a service), as the application names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Free-form application metadata.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub user: serde_json::Map<String, Value>,
    /// The W3C trace context (`traceparent`) of the span that recorded the event, so that
    /// whoever handles it continues the trace (see [`telemetry`](crate::telemetry)).
    /// Serialized as its canonical `traceparent` string; an invalid stored value is
    /// dropped when read, never an error.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "valid_traceparent"
    )]
    pub traceparent: Option<crate::telemetry::TraceContext>,
    /// The event's [tags](crate::Tag), which [queries](crate::Query) select it by. Stores
    /// add the tags the event declares itself ([`DomainEvent::tags`](crate::DomainEvent::tags),
    /// the derive's `#[tag]` fields) to these when they append it, so a stored event shows
    /// them all.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub tags: BTreeSet<crate::Tag>,
}

/// Reads a traceparent, dropping one that is not valid: a bad trace context must never
/// make an event unreadable.
fn valid_traceparent<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<crate::telemetry::TraceContext>, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?;
    Ok(match value {
        Some(Value::String(text)) => crate::telemetry::TraceContext::parse(&text),
        _ => None,
    })
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn with_causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Sets the actor.
    #[must_use]
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Adds one free-form entry.
    #[must_use]
    pub fn with_user(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.user.insert(key.into(), value.into());
        self
    }

    /// Adds a tag.
    #[must_use]
    pub fn with_tag(mut self, tag: crate::Tag) -> Self {
        self.tags.insert(tag);
        self
    }

    /// Adds tags.
    #[must_use]
    pub fn with_tags(mut self, tags: impl IntoIterator<Item = crate::Tag>) -> Self {
        self.tags.extend(tags);
        self
    }

    /// Sets the W3C trace context, if `traceparent` is a valid one
    /// ([`TraceContext::parse`](crate::telemetry::TraceContext::parse)); an invalid one
    /// is dropped (and leaves what was set). Only the parsed context is kept, never the
    /// text: a later version's extra fields are not.
    #[must_use]
    pub fn with_traceparent(mut self, traceparent: impl AsRef<str>) -> Self {
        if let Some(context) = crate::telemetry::TraceContext::parse(traceparent.as_ref()) {
            self.traceparent = Some(context);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_round_trips_through_json() {
        let metadata = Metadata::new()
            .with_correlation_id(Uuid::now_v7())
            .with_causation_id(Uuid::now_v7())
            .with_actor("ada")
            .with_user("ip", "10.0.0.1");
        let json = serde_json::to_value(&metadata).unwrap();
        assert_eq!(serde_json::from_value::<Metadata>(json).unwrap(), metadata);
    }

    #[test]
    fn metadata_stored_before_traceparents_reads_unchanged() {
        let stored = json!({
            "correlation_id": "0190a0c8-0000-7000-8000-000000000001",
            "actor": "ada",
            "user": { "tenant": "acme" }
        });
        let metadata: Metadata = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(metadata.traceparent, None);
        assert_eq!(metadata.actor.as_deref(), Some("ada"));
        // And writes back exactly as it was: no `traceparent` key.
        assert_eq!(serde_json::to_value(&metadata).unwrap(), stored);
    }

    #[test]
    fn traceparent_round_trips_and_an_invalid_one_is_dropped() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let metadata = Metadata::new().with_traceparent(traceparent);
        let json = serde_json::to_value(&metadata).unwrap();
        assert_eq!(json, json!({ "traceparent": traceparent }));
        assert_eq!(serde_json::from_value::<Metadata>(json).unwrap(), metadata);

        assert_eq!(
            Metadata::new().with_traceparent("nonsense").traceparent,
            None
        );
        for bad in [json!("nonsense"), json!(42), json!(null), json!({ "a": 1 })] {
            let read: Metadata =
                serde_json::from_value(json!({ "actor": "ada", "traceparent": bad })).unwrap();
            assert_eq!(read.traceparent, None, "{bad} was kept");
            assert_eq!(read.actor.as_deref(), Some("ada"));
        }
    }

    #[test]
    fn only_the_canonical_traceparent_is_kept() {
        let canonical = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-vendor=x";
        let metadata = Metadata::new().with_traceparent(later);
        assert_eq!(
            serde_json::to_value(&metadata).unwrap(),
            json!({ "traceparent": canonical })
        );
        let read: Metadata = serde_json::from_value(json!({ "traceparent": later })).unwrap();
        assert_eq!(read, metadata);
        for bad in [
            format!("{later}-\0"),
            format!("{later}\r\nNats-Msg-Id: x"),
            format!("{later}-{}", "x".repeat(1 << 20)),
        ] {
            assert_eq!(Metadata::new().with_traceparent(&bad).traceparent, None);
            let read: Metadata = serde_json::from_value(json!({ "traceparent": bad })).unwrap();
            assert_eq!(read.traceparent, None);
        }
    }

    #[test]
    fn empty_metadata_is_an_empty_object() {
        assert_eq!(serde_json::to_value(Metadata::new()).unwrap(), json!({}));
    }
}
