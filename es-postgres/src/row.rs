//! Rows of the events table, read by column name into small structs, and turned into
//! envelopes.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use es_core::{
    DomainEvent, EventEnvelope, LoadItem, LoadStart, Metadata, PayloadError, Position, ReadError,
    Snapshot, StreamId, Tag, Version,
};
use sqlx::postgres::{PgRow, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{FromRow, Postgres, Row as _};
use uuid::Uuid;

use crate::xid::Xid8;

/// Where a row sits in the global log: the `position` and `transaction_id` columns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PositionRow {
    pub(crate) position: i64,
    pub(crate) transaction_id: Xid8,
}

impl PositionRow {
    /// The columns it is read from (checked against the statements in `sql/catalogue.rs`).
    #[cfg(test)]
    pub(crate) const COLUMNS: &[&str] = &["position", "transaction_id"];

    /// As es-core's position.
    pub(crate) fn to_position(self) -> Result<Position, ReadError> {
        let Xid8(transaction) = self.transaction_id;
        Ok(Position::from_parts(
            transaction,
            non_negative(self.position, "position")?,
        ))
    }
}

impl FromRow<'_, PgRow> for PositionRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            position: row.try_get("position")?,
            transaction_id: row.try_get("transaction_id")?,
        })
    }
}

/// What an append's `RETURNING` gives back for each event (`sql/append_*.sql`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppendedRow {
    pub(crate) at: PositionRow,
    pub(crate) version: i64,
    pub(crate) recorded_at: DateTime<Utc>,
}

impl AppendedRow {
    /// The columns it is read from.
    #[cfg(test)]
    pub(crate) const COLUMNS: &[&str] = &["position", "transaction_id", "version", "recorded_at"];
}

impl FromRow<'_, PgRow> for AppendedRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            at: PositionRow::from_row(row)?,
            version: row.try_get("version")?,
            recorded_at: row.try_get("recorded_at")?,
        })
    }
}

/// A stored event as the reads select it (`sql/read_stream_page.sql`, `read_log.sql`,
/// `find_event.sql`, `find_events.sql`), its text columns borrowed from the row.
#[derive(Debug)]
pub(crate) struct EventRow<'r> {
    pub(crate) at: PositionRow,
    pub(crate) stream_id: &'r str,
    pub(crate) version: i64,
    pub(crate) event_id: Uuid,
    pub(crate) event_type: &'r str,
    pub(crate) schema_version: i32,
    pub(crate) payload: JsonbText<'r>,
    pub(crate) correlation_id: Option<Uuid>,
    pub(crate) causation_id: Option<Uuid>,
    pub(crate) actor: Option<String>,
    /// The free-form entries.
    pub(crate) metadata: JsonbText<'r>,
    /// The W3C trace context, as stored (migration 0007).
    pub(crate) traceparent: Option<&'r str>,
    /// The tags, as stored (migration 0008): NULL for none. Kept undecoded when they do not
    /// decode as a one-dimensional text array (written by hand), so that the envelope can
    /// fail with the event's stream and version.
    pub(crate) tags: Result<Option<Vec<Option<String>>>, sqlx::Error>,
    pub(crate) recorded_at: DateTime<Utc>,
}

impl EventRow<'_> {
    /// The columns it is read from.
    #[cfg(test)]
    pub(crate) const COLUMNS: &'static [&'static str] = &[
        "position",
        "transaction_id",
        "stream_id",
        "version",
        "event_id",
        "event_type",
        "schema_version",
        "payload",
        "correlation_id",
        "causation_id",
        "actor",
        "metadata",
        "traceparent",
        "tags",
        "recorded_at",
    ];
}

impl<'r> FromRow<'r, PgRow> for EventRow<'r> {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            at: PositionRow::from_row(row)?,
            stream_id: row.try_get("stream_id")?,
            version: row.try_get("version")?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            schema_version: row.try_get("schema_version")?,
            payload: row.try_get("payload")?,
            correlation_id: row.try_get("correlation_id")?,
            causation_id: row.try_get("causation_id")?,
            actor: row.try_get("actor")?,
            metadata: row.try_get("metadata")?,
            traceparent: row.try_get("traceparent")?,
            tags: row.try_get("tags"),
            recorded_at: row.try_get("recorded_at")?,
        })
    }
}

/// A row of an aggregate's load (`sql/load_start.sql`, `load_page.sql`): the columns an
/// event's decoding and its errors need, none of the metadata. In the start row the
/// snapshot's columns take the event's places, and `event_id` is NULL.
#[derive(Debug)]
pub(crate) struct LoadRow<'r> {
    pub(crate) at: Option<PositionRow>,
    pub(crate) version: Option<i64>,
    pub(crate) event_id: Option<Uuid>,
    pub(crate) event_type: Option<&'r str>,
    pub(crate) schema_version: Option<i32>,
    pub(crate) payload: Option<JsonbText<'r>>,
}

impl LoadRow<'_> {
    /// The columns it is read from.
    #[cfg(test)]
    pub(crate) const COLUMNS: &'static [&'static str] = &[
        "position",
        "transaction_id",
        "version",
        "event_id",
        "event_type",
        "schema_version",
        "payload",
    ];
}

impl<'r> FromRow<'r, PgRow> for LoadRow<'r> {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let position: Option<i64> = row.try_get("position")?;
        let transaction_id: Option<Xid8> = row.try_get("transaction_id")?;
        Ok(Self {
            at: position
                .zip(transaction_id)
                .map(|(position, transaction_id)| PositionRow {
                    position,
                    transaction_id,
                }),
            version: row.try_get("version")?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            schema_version: row.try_get("schema_version")?,
            payload: row.try_get("payload")?,
        })
    }
}

/// How the error of a load's start row whose snapshot cannot be read begins.
const UNREADABLE_SNAPSHOT: &str = "unreadable snapshot";

/// Whether `error` is that of a load's start row whose snapshot cannot be read.
pub(crate) fn is_unreadable_snapshot(error: &ReadError) -> bool {
    matches!(error, ReadError::Corrupt { detail } if detail.starts_with(UNREADABLE_SNAPSHOT))
}

/// Reads a row of an aggregate's load of `stream` into its item: the start row (its
/// `event_id` is NULL) into the snapshot and archive state, any other into the event.
pub(crate) fn load_item<E: DomainEvent>(
    row: &PgRow,
    stream: &StreamId,
) -> Result<LoadItem<E>, ReadError> {
    let load = LoadRow::from_row(row).map_err(|e| unexpected(&e))?;
    let schema_version = |stored: Option<i32>, version: Version| {
        let stored = stored.unwrap_or_default();
        u32::try_from(stored).map_err(|_| ReadError::Corrupt {
            detail: format!("negative schema version {stored} at version {version} of `{stream}`"),
        })
    };
    let Some(event_id) = load.event_id else {
        let archived: bool = row.try_get("archived").map_err(|e| unexpected(&e))?;
        // Told apart by the load (`SnapshotStore::load_events`), which then loads without
        // the snapshot: a snapshot is a cache, never a reason a load fails.
        let unreadable = |what: &str, version: Version| ReadError::Corrupt {
            detail: format!("{UNREADABLE_SNAPSHOT} of `{stream}` at {version}: {what}"),
        };
        let snapshot = match (load.version, load.payload) {
            (Some(version), Some(state)) => {
                let version = u64::try_from(version).map_err(|_| ReadError::Corrupt {
                    detail: format!(
                        "{UNREADABLE_SNAPSHOT} of `{stream}`: its version {version} is negative"
                    ),
                })?;
                let version = Version::new(version);
                let taken_at: DateTime<Utc> = row
                    .try_get("taken_at")
                    .map_err(|_| unreadable("its time does not read", version))?;
                // A snapshot is the application's own encoding: kept as a value, as
                // `load_snapshot` gives it. (serde_json refuses what nests too deeply.)
                let state = serde_json::from_str(state.0)
                    .map_err(|_| unreadable("its state does not parse", version))?;
                let schema_version = schema_version(load.schema_version, version)
                    .map_err(|_| unreadable("its schema version is negative", version))?;
                Some(Snapshot {
                    stream_id: stream.clone(),
                    version,
                    schema_version,
                    state,
                    taken_at,
                })
            }
            _ => None,
        };
        return Ok(LoadItem::Start(LoadStart::new(snapshot, archived)));
    };
    let missing = |column: &str| ReadError::Corrupt {
        detail: format!("a load of `{stream}` read an event without its {column}"),
    };
    let version = Version::new(non_negative(
        load.version.ok_or_else(|| missing("version"))?,
        "version",
    )?);
    let position = load.at.ok_or_else(|| missing("position"))?.to_position()?;
    let event_type = load.event_type.ok_or_else(|| missing("type"))?;
    let payload = load.payload.ok_or_else(|| missing("payload"))?;
    let schema_version = schema_version(load.schema_version, version)?;
    let event = E::decode_json(event_type, schema_version, payload.0).map_err(|source| {
        ReadError::decode(
            event_id,
            stream.clone(),
            version,
            position,
            event_type,
            schema_version,
            source,
        )
    })?;
    Ok(LoadItem::Event {
        version,
        event_id,
        position,
        event,
    })
}

/// The text of a `jsonb` value, borrowed from the row.
///
/// In the binary protocol PostgreSQL sends `jsonb` as a format version byte (1) followed by
/// the JSON text; reading those bytes directly spares a parse whose only use would be to
/// check text that the decoder parses anyway. Only `jsonb` columns decode so (a `json` or
/// `text` column is a type mismatch, as sqlx reports it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonbText<'r>(pub(crate) &'r str);

impl sqlx::Type<Postgres> for JsonbText<'_> {
    fn type_info() -> PgTypeInfo {
        <serde_json::Value as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        *ty == Self::type_info()
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for JsonbText<'r> {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let binary = value.format() == PgValueFormat::Binary;
        let bytes = value.as_bytes()?;
        let text = match bytes.split_first() {
            Some((1, text)) if binary => text,
            Some((version, _)) if binary => {
                return Err(format!("unknown jsonb format version {version}").into());
            }
            _ => bytes,
        };
        Ok(Self(std::str::from_utf8(text)?))
    }
}

/// A row that is not what its statement promises, as a read error.
pub(crate) fn unexpected(error: &sqlx::Error) -> ReadError {
    ReadError::Corrupt {
        detail: format!("unexpected events row: {error}"),
    }
}

/// Reads an events row ([`EventRow`]) into an envelope of `E`. `stream`, when the caller
/// knows it (a stream read), spares parsing the stream id of every row.
pub(crate) fn envelope<E: DomainEvent>(
    row: &PgRow,
    stream: Option<&StreamId>,
) -> Result<EventEnvelope<E>, ReadError> {
    let row = EventRow::from_row(row).map_err(|e| unexpected(&e))?;
    let position = row.at.to_position()?;
    let stream_id = match stream {
        Some(stream) => stream.clone(),
        None => StreamId::parse(row.stream_id).map_err(|error| ReadError::Corrupt {
            detail: format!("stored stream id {:?} is invalid: {error}", row.stream_id),
        })?,
    };
    let version = Version::new(non_negative(row.version, "version")?);
    let mut metadata = Metadata::new();
    metadata.correlation_id = row.correlation_id;
    metadata.causation_id = row.causation_id;
    metadata.actor = row.actor;
    // Parsed again on the way out, through the one parser: a row written by hand (or by a
    // version that stored what it was given) hands a handler a valid, canonical trace
    // context or none.
    metadata.traceparent = row
        .traceparent
        .and_then(es_core::telemetry::TraceContext::parse);
    metadata.tags = tags(row.tags).map_err(|source| ReadError::Metadata {
        stream: stream_id.clone(),
        version,
        source,
    })?;
    // Most events carry no free-form metadata; skip parsing the empty object.
    if row.metadata.0 != "{}" {
        // Only what `PayloadError` keeps: serde's message would quote the stored values.
        metadata.user =
            serde_json::from_str(row.metadata.0).map_err(|error| ReadError::Metadata {
                stream: stream_id.clone(),
                version,
                source: PayloadError::from(error),
            })?;
    }
    let schema_version = row.schema_version;
    let schema_version = u32::try_from(schema_version).map_err(|_| ReadError::Corrupt {
        detail: format!(
            "negative schema version {schema_version} at version {version} of `{stream_id}`"
        ),
    })?;
    // The payload is decoded straight from its JSON text into the event: no intermediate
    // `Value`, and no separate validation pass (decoding validates).
    let event =
        E::decode_json(row.event_type, schema_version, row.payload.0).map_err(|source| {
            ReadError::decode(
                row.event_id,
                stream_id.clone(),
                version,
                position,
                row.event_type,
                schema_version,
                source,
            )
        })?;
    Ok(EventEnvelope {
        event_id: row.event_id,
        stream_id,
        version,
        position,
        recorded_at: row.recorded_at,
        metadata,
        event,
    })
}

/// Stored tags as [`Tag`]s, each checked as a tag written by the store would be: a tag
/// written by hand that is not valid fails, saying what is wrong but not what it holds.
fn tags(
    stored: Result<Option<Vec<Option<String>>>, sqlx::Error>,
) -> Result<BTreeSet<Tag>, PayloadError> {
    let invalid = |what: String| {
        PayloadError::from(<serde_json::Error as serde::de::Error>::custom(format!(
            "stored tags: {what}"
        )))
    };
    let Some(stored) = stored.map_err(|_| invalid("not a one-dimensional text array".into()))?
    else {
        return Ok(BTreeSet::new());
    };
    let count = stored.len();
    let mut tags = BTreeSet::new();
    for (index, tag) in stored.into_iter().enumerate() {
        let tag = tag.ok_or_else(|| invalid(format!("tag {} of {count} is NULL", index + 1)))?;
        // The tag's own error names its key only; the payload error takes quoted parts out
        // all the same.
        let tag = Tag::new(tag).map_err(|error| {
            invalid(format!(
                "tag {} of {count} is not valid ({error})",
                index + 1
            ))
        })?;
        tags.insert(tag);
    }
    Ok(tags)
}

/// The log position of a row with the [`PositionRow`] columns.
pub(crate) fn position_of(row: &PgRow) -> Result<Position, ReadError> {
    PositionRow::from_row(row)
        .map_err(|e| unexpected(&e))?
        .to_position()
}

fn non_negative(value: i64, what: &str) -> Result<u64, ReadError> {
    u64::try_from(value).map_err(|_| ReadError::Corrupt {
        detail: format!("negative {what} {value}"),
    })
}

/// A position's parts as the two bigints of the checkpoints table.
pub(crate) fn position_parts(position: Position) -> Option<(i64, i64)> {
    let (major, minor) = position.parts();
    Some((i64::try_from(major).ok()?, i64::try_from(minor).ok()?))
}
