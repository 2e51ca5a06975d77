//! `es streams` and `es show STREAM`.

use chrono::{DateTime, Utc};
use es_core::{AsOf, EventStore as _, RawEvent, StreamId, Version};
use es_postgres::{PgEventStore, PgStreamSummary};
use futures_util::StreamExt as _;
use serde::Serialize;

use super::{EventRecord, clip, plain, short, time};
use crate::error::CliError;
use crate::output::Output;

/// A stream as `es streams --json` writes it.
#[derive(Debug, Serialize)]
struct StreamRecord {
    stream_id: String,
    category: String,
    events: u64,
    version: u64,
    first_recorded_at: DateTime<Utc>,
    last_recorded_at: DateTime<Utc>,
    archived: bool,
}

impl From<PgStreamSummary> for StreamRecord {
    fn from(stream: PgStreamSummary) -> Self {
        Self {
            category: stream.stream_id.category().to_owned(),
            stream_id: stream.stream_id.to_string(),
            events: stream.events,
            version: stream.version.get(),
            first_recorded_at: stream.first_recorded_at,
            last_recorded_at: stream.last_recorded_at,
            archived: stream.archived,
        }
    }
}

pub(crate) async fn list(
    out: &Output,
    store: &PgEventStore,
    category: Option<&str>,
    limit: u32,
) -> Result<(), CliError> {
    // One more than asked, to tell whether the limit cut the list short.
    let mut streams = store
        .admin()
        .streams(category, None, limit.saturating_add(1))
        .await?;
    let more = streams.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    streams.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let records: Vec<StreamRecord> = streams.into_iter().map(StreamRecord::from).collect();
    if out.json {
        return out.print_json(&records);
    }
    let mut table = out.table(["stream", "events", "version", "last recorded", "archived"]);
    for record in &records {
        table.add_row(vec![
            record.stream_id.clone(),
            record.events.to_string(),
            record.version.to_string(),
            time(record.last_recorded_at),
            if record.archived { "yes" } else { "" }.to_owned(),
        ]);
    }
    let empty = match category {
        Some(category) => format!("no streams in category `{category}`"),
        None => "no streams".to_owned(),
    };
    out.print_table(&table, &empty)?;
    if more {
        out.line(&format!(
            "(the first {limit} streams; pass --limit for more, or --category to narrow)"
        ))?;
    }
    Ok(())
}

pub(crate) async fn show(
    out: &Output,
    store: &PgEventStore,
    stream: &str,
    as_of: Option<AsOf>,
) -> Result<(), CliError> {
    let stream_id = StreamId::parse(stream).map_err(|source| CliError::InvalidStream {
        text: stream.to_owned(),
        source,
    })?;
    if store.stream_version(&stream_id).await? == Version::INITIAL {
        return Err(CliError::UnknownStream {
            stream: stream_id.to_string(),
        });
    }
    let archived = store.is_archived(&stream_id).await?;
    let events = store.read_stream::<RawEvent>(&stream_id, Version::new(1));
    futures_util::pin_mut!(events);
    let mut records = Vec::new();
    while let Some(envelope) = events.next().await {
        let envelope = envelope?;
        // The same prefix as es-core's `Repository::load_as_of`: up to the version, or
        // the events recorded by the time (the first one recorded later ends it).
        let included = match as_of {
            Some(AsOf::Version(version)) => envelope.version <= version,
            Some(AsOf::Time(at)) => envelope.recorded_at <= at,
            _ => true,
        };
        if !included {
            break;
        }
        records.push(EventRecord::from(envelope));
    }
    if out.json {
        return out.print_json(&records);
    }
    let mut table = out.table([
        "version", "position", "type", "recorded", "metadata", "payload",
    ]);
    for record in &records {
        table.add_row(vec![
            record.version.to_string(),
            record.position.clone(),
            format!("{} v{}", plain(&record.event_type), record.schema_version),
            time(record.recorded_at),
            metadata_text(record),
            clip(&record.payload.to_string(), 60),
        ]);
    }
    let mut heading = format!("stream `{stream_id}`");
    if archived {
        heading.push_str(" (archived)");
    }
    match as_of {
        Some(AsOf::Version(version)) => heading.push_str(&format!(" as of version {version}")),
        Some(AsOf::Time(at)) => heading.push_str(&format!(" as of {}", time(at))),
        _ => {}
    }
    out.line(&format!("{heading}: {} events", records.len()))?;
    out.print_table(&table, "(no events by then)")
}

/// The metadata column: correlation and causation ids (short), actor, and the free-form
/// entries.
fn metadata_text(record: &EventRecord) -> String {
    let mut parts = Vec::new();
    if let Some(id) = record.correlation_id {
        parts.push(format!("correlation {}", short(id)));
    }
    if let Some(id) = record.causation_id {
        parts.push(format!("causation {}", short(id)));
    }
    if let Some(actor) = &record.actor {
        parts.push(format!("actor {}", plain(actor)));
    }
    if !record.metadata.is_empty() {
        parts.push(clip(
            &serde_json::Value::Object(record.metadata.clone()).to_string(),
            40,
        ));
    }
    parts.join("\n")
}
