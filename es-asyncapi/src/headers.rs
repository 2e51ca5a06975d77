//! The message headers every relayed event carries, named once for the document and for
//! relays that set them.
//!
//! Names follow the CloudEvents 1.0 binary mode (`ce-` attributes) where an attribute fits,
//! so generic CloudEvents tooling can route and log them; what CloudEvents has no attribute
//! for is prefixed `es-`. All values are strings, as message headers are.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The CloudEvents version, always `1.0`.
pub const SPEC_VERSION: &str = "ce-specversion";
/// The event id (a UUID): unique per event, the key consumers deduplicate by.
pub const EVENT_ID: &str = "ce-id";
/// The stored event type name: the discriminator between a channel's messages.
pub const EVENT_TYPE: &str = "ce-type";
/// The stream category the event belongs to, such as `order`.
pub const SOURCE: &str = "ce-source";
/// The stream id, such as `order-42`.
pub const STREAM_ID: &str = "ce-subject";
/// When the store recorded the event, RFC 3339.
pub const RECORDED_AT: &str = "ce-time";
/// The payload's schema version as stored: the current one or an older one upcasters read.
pub const SCHEMA_VERSION: &str = "es-schema-version";
/// The event's version within its stream, from 1.
pub const VERSION: &str = "es-version";
/// The event's position in the store's global log, `major:minor` (es-core's `Position` text).
pub const POSITION: &str = "es-position";
/// The id shared by everything one business flow caused, if the event has one.
pub const CORRELATION_ID: &str = "es-correlation-id";
/// The id of the command or event that caused this one, if the event has one.
pub const CAUSATION_ID: &str = "es-causation-id";
/// The W3C trace context of the span that recorded the event, if it has one: consumers
/// continue that trace (`es_core::telemetry`).
pub const TRACEPARENT: &str = es_core::telemetry::TRACEPARENT_HEADER;
/// The event's tags (`es_core::Tag`), if it has any: separated by `,`, each with every
/// byte outside printable ASCII, and `%` and `,`, written as `%XX` (so `course:c1` reads
/// as it is), so that every tag survives a NATS header intact.
pub const TAGS: &str = "es-tags";

/// The JSON Schema of the headers of one message: `event_type` and its older `aliases` as
/// the discriminator's values (an event stored under an alias is relayed under it), and
/// `versions` as the schema versions that may arrive.
pub(crate) fn schema(
    category: &str,
    event_type: &str,
    aliases: &[&str],
    versions: &[u32],
) -> Value {
    let mut names = vec![event_type];
    names.extend_from_slice(aliases);
    let versions: Vec<String> = versions.iter().map(u32::to_string).collect();
    let counter = |description: &str| json!({ "type": "string", "pattern": "^[1-9][0-9]*$", "description": description });
    let uuid = |description: &str| json!({ "type": "string", "format": "uuid", "description": description });
    let properties: BTreeMap<&str, Value> = BTreeMap::from([
        (
            SPEC_VERSION,
            json!({ "type": "string", "const": "1.0", "description": "The CloudEvents version." }),
        ),
        (
            EVENT_ID,
            uuid("The event id, unique per event: deduplicate by it."),
        ),
        (
            EVENT_TYPE,
            json!({ "type": "string", "enum": names, "description": "The event type as stored: which message this is (older names listed after the current one)." }),
        ),
        (
            SOURCE,
            json!({ "type": "string", "const": category, "description": "The stream category." }),
        ),
        (
            STREAM_ID,
            json!({ "type": "string", "description": "The stream id, `<category>-<id>`." }),
        ),
        (
            RECORDED_AT,
            json!({ "type": "string", "format": "date-time", "description": "When the store recorded the event." }),
        ),
        (
            SCHEMA_VERSION,
            json!({ "type": "string", "enum": versions, "description": "The payload's schema version as stored." }),
        ),
        (
            VERSION,
            counter("The event's version within its stream, from 1."),
        ),
        (
            POSITION,
            json!({
                "type": "string",
                "pattern": "^[0-9]+:[0-9]+$",
                "description": "The event's position in the store's global log, `major:minor`: \
                    opaque, but in log order (compare the parts as numbers); consumers skip \
                    what they have handled by it.",
            }),
        ),
        (
            CORRELATION_ID,
            uuid("The id shared by everything one business flow caused."),
        ),
        (
            CAUSATION_ID,
            uuid("The id of the command or event that caused this one."),
        ),
        (
            TAGS,
            json!({
                "type": "string",
                "description": "The event's tags, separated by `,`; in each, every byte \
                    outside printable ASCII, and `%` and `,`, is written as `%XX`.",
            }),
        ),
        (
            TRACEPARENT,
            json!({
                "type": "string",
                "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "The W3C trace context of the span that recorded the event: \
                    continue its trace.",
            }),
        ),
    ]);
    json!({
        "type": "object",
        "discriminator": EVENT_TYPE,
        "required": [SPEC_VERSION, EVENT_ID, EVENT_TYPE, SOURCE, STREAM_ID, RECORDED_AT, SCHEMA_VERSION, VERSION, POSITION],
        "properties": properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented header admits exactly what a relay sends: the canonical form
    /// `es_core::telemetry::TraceContext` writes, nothing a later version might append.
    #[test]
    fn the_traceparent_header_is_the_canonical_form() {
        let schema = schema("parcel", "Sent", &[], &[1])["properties"][TRACEPARENT].clone();
        let validator = jsonschema::draft7::new(&schema).unwrap();
        let canonical = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(validator.is_valid(&json!(canonical)));
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert!(!validator.is_valid(&json!(bad)), "{bad:?}");
        }
    }
}
