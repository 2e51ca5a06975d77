//! Turning rows of the events table into envelopes.

use chrono::{DateTime, Utc};
use es_core::{
    DomainEvent, EventEnvelope, Metadata, PayloadError, Position, ReadError, StreamId, Version,
};
use sqlx::postgres::PgRow;
use sqlx::{Column as _, Row as _, TypeInfo as _};
use uuid::Uuid;

use crate::xid::Xid8;

/// Reads a row with `sql::ENVELOPE_COLUMNS` into an envelope of `E`. `stream`, when the
/// caller knows it (a stream read), spares parsing the stream id of every row.
pub(crate) fn envelope<E: DomainEvent>(
    row: &PgRow,
    stream: Option<&StreamId>,
) -> Result<EventEnvelope<E>, ReadError> {
    let column = |error: sqlx::Error| ReadError::Corrupt {
        detail: format!("unexpected events row: {error}"),
    };
    let position = position_of(row)?;
    let stream_id = match stream {
        Some(stream) => stream.clone(),
        None => {
            let text: &str = row.try_get(2).map_err(column)?;
            StreamId::parse(text).map_err(|error| ReadError::Corrupt {
                detail: format!("stored stream id {text:?} is invalid: {error}"),
            })?
        }
    };
    let version: i64 = row.try_get(3).map_err(column)?;
    let version = Version::new(non_negative(version, "version")?);
    let event_id: Uuid = row.try_get(4).map_err(column)?;
    let event_type: &str = row.try_get(5).map_err(column)?;
    let schema_version: i32 = row.try_get(6).map_err(column)?;
    // Borrowed as JSON text and decoded straight into the event: no intermediate `Value`,
    // and no separate validation pass (decoding validates).
    let payload = jsonb_text(row, 7)?;
    let mut metadata = Metadata::new();
    metadata.correlation_id = row.try_get(8).map_err(column)?;
    metadata.causation_id = row.try_get(9).map_err(column)?;
    metadata.actor = row.try_get(10).map_err(column)?;
    let user = jsonb_text(row, 11)?;
    // Most events carry no free-form metadata; skip parsing the empty object.
    if user != "{}" {
        // Only what `PayloadError` keeps: serde's message would quote the stored values.
        metadata.user = serde_json::from_str(user).map_err(|error| ReadError::Metadata {
            stream: stream_id.clone(),
            version,
            source: PayloadError::from(error),
        })?;
    }
    let recorded_at: DateTime<Utc> = row.try_get(12).map_err(column)?;

    let schema_version = u32::try_from(schema_version).map_err(|_| ReadError::Corrupt {
        detail: format!(
            "negative schema version {schema_version} at version {version} of `{stream_id}`"
        ),
    })?;
    let event = E::decode_json(event_type, schema_version, payload).map_err(|source| {
        ReadError::decode(
            event_id,
            stream_id.clone(),
            version,
            position,
            event_type,
            schema_version,
            source,
        )
    })?;
    Ok(EventEnvelope {
        event_id,
        stream_id,
        version,
        position,
        recorded_at,
        metadata,
        event,
    })
}

/// The text of a `jsonb` column, borrowed from the row.
///
/// In the binary protocol PostgreSQL sends `jsonb` as a format version byte (1) followed by
/// the JSON text; reading those bytes directly spares a parse whose only use would be to
/// check text that the decoder parses anyway.
fn jsonb_text(row: &PgRow, index: usize) -> Result<&str, ReadError> {
    let corrupt = |detail: String| ReadError::Corrupt { detail };
    let column = row
        .columns()
        .get(index)
        .ok_or_else(|| corrupt(format!("no column {index}")))?;
    if column.type_info().name() != "JSONB" {
        return Err(corrupt(format!(
            "column {} is {}, not jsonb",
            column.name(),
            column.type_info().name()
        )));
    }
    let bytes: &[u8] = row
        .try_get_unchecked(index)
        .map_err(|error| corrupt(format!("unreadable jsonb column: {error}")))?;
    // JSON text never starts with byte 1, so this also reads the text format unchanged.
    let text = match bytes.split_first() {
        Some((1, text)) => text,
        _ => bytes,
    };
    std::str::from_utf8(text)
        .map_err(|error| corrupt(format!("jsonb column is not UTF-8: {error}")))
}

/// The log position of a row whose first two columns are `position, transaction_id`.
pub(crate) fn position_of(row: &PgRow) -> Result<Position, ReadError> {
    let column = |error: sqlx::Error| ReadError::Corrupt {
        detail: format!("unexpected events row: {error}"),
    };
    let sequence: i64 = row.try_get(0).map_err(column)?;
    let Xid8(transaction) = row.try_get(1).map_err(column)?;
    Ok(Position::from_parts(
        transaction,
        non_negative(sequence, "position")?,
    ))
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
