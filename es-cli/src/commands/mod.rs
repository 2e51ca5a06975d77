//! One module per command; the event record `es show` and `es tail` share is here.

pub(crate) mod horizon;
pub(crate) mod migrate;
pub(crate) mod parked;
pub(crate) mod projections;
pub(crate) mod streams;
pub(crate) mod tail;

use chrono::{DateTime, SecondsFormat, Utc};
use es_core::{EventEnvelope, RawEvent};
use serde::Serialize;
use uuid::Uuid;

/// An event as `es show --json` and `es tail --json` write it. The field names are part of
/// the CLI's interface (docs/src/cli.md lists them).
#[derive(Debug, Serialize)]
pub(crate) struct EventRecord {
    pub(crate) event_id: Uuid,
    pub(crate) stream_id: String,
    pub(crate) version: u64,
    /// `major:minor`, as `es tail --from` takes it.
    pub(crate) position: String,
    pub(crate) event_type: String,
    pub(crate) schema_version: u32,
    pub(crate) recorded_at: DateTime<Utc>,
    pub(crate) correlation_id: Option<Uuid>,
    pub(crate) causation_id: Option<Uuid>,
    pub(crate) actor: Option<String>,
    /// The free-form metadata entries.
    pub(crate) metadata: serde_json::Map<String, serde_json::Value>,
    pub(crate) payload: serde_json::Value,
}

impl From<EventEnvelope<RawEvent>> for EventRecord {
    fn from(envelope: EventEnvelope<RawEvent>) -> Self {
        Self {
            event_id: envelope.event_id,
            stream_id: envelope.stream_id.to_string(),
            version: envelope.version.get(),
            position: envelope.position.to_string(),
            event_type: envelope.event.event_type,
            schema_version: envelope.event.schema_version,
            recorded_at: envelope.recorded_at,
            correlation_id: envelope.metadata.correlation_id,
            causation_id: envelope.metadata.causation_id,
            actor: envelope.metadata.actor,
            metadata: envelope.metadata.user,
            payload: envelope.event.payload,
        }
    }
}

/// A time as the tables show it: RFC 3339 to the millisecond, in UTC.
pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `text` for a table cell: its control characters (ESC, CR, a newline, ...) written as
/// Rust escapes (`\u{1b}`, `\r`, `\n`), everything else as it is. Errors, projection names
/// and the like come from the application's code or a client (PostgreSQL's
/// `application_name`), and a raw ESC or CR would reach the terminal: recolour it, move the
/// cursor, or overwrite the row. (`--json` needs none of this: serde escapes them.)
pub(crate) fn plain(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            plain.extend(c.escape_default());
        } else {
            plain.push(c);
        }
    }
    plain
}

/// `text` as a cell ([`plain`]) cut to `max` characters, with an ellipsis if it was
/// longer: long payloads and errors stay readable in a table (`--json` has them whole).
pub(crate) fn clip(text: &str, max: usize) -> String {
    let text = plain(text);
    if text.chars().count() <= max {
        text
    } else {
        let mut clipped: String = text.chars().take(max.saturating_sub(1)).collect();
        clipped.push('…');
        clipped
    }
}

/// An id's first eight characters, enough to tell ids apart in a table.
pub(crate) fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

#[cfg(test)]
mod tests {
    use super::{clip, plain};

    #[test]
    fn cells_carry_no_control_characters() {
        let error = "\x1b[2J\x1b[31mboom\rok\n\tnext\u{7f}";
        let cell = plain(error);
        assert!(!cell.chars().any(char::is_control), "{cell:?}");
        assert_eq!(cell, "\\u{1b}[2J\\u{1b}[31mboom\\rok\\n\\tnext\\u{7f}");
        assert_eq!(plain("no such customer: é ✓"), "no such customer: é ✓");
        let clipped = clip(error, 12);
        assert!(!clipped.chars().any(char::is_control), "{clipped:?}");
        assert_eq!(clipped.chars().count(), 12);
        assert!(clipped.ends_with('…'));
        assert_eq!(clip("short", 12), "short");
    }
}
