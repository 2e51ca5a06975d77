//! Turning rows of the events table into envelopes.

use chrono::{DateTime, Utc};
use es_core::{DomainEvent, EventEnvelope, Metadata, Position, ReadError, StreamId, Version};
use serde_json::Value;
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use uuid::Uuid;

/// Reads a row with `sql::ENVELOPE_COLUMNS` into an envelope of `E`.
pub(crate) fn envelope<E: DomainEvent>(row: &PgRow) -> Result<EventEnvelope<E>, ReadError> {
    let column = |error: sqlx::Error| ReadError::Corrupt {
        detail: format!("unexpected events row: {error}"),
    };
    let position: i64 = row.try_get(0).map_err(column)?;
    let transaction: String = row.try_get(1).map_err(column)?;
    let stream: String = row.try_get(2).map_err(column)?;
    let version: i64 = row.try_get(3).map_err(column)?;
    let event_id: Uuid = row.try_get(4).map_err(column)?;
    let event_type: String = row.try_get(5).map_err(column)?;
    let schema_version: i32 = row.try_get(6).map_err(column)?;
    let payload: Value = row.try_get(7).map_err(column)?;
    let metadata: Value = row.try_get(8).map_err(column)?;
    let recorded_at: DateTime<Utc> = row.try_get(9).map_err(column)?;

    let stream_id = StreamId::parse(&stream).map_err(|error| ReadError::Corrupt {
        detail: format!("stored stream id {stream:?} is invalid: {error}"),
    })?;
    let version = Version::new(non_negative(version, "version")?);
    let position = log_position(&transaction, position)?;
    let metadata: Metadata =
        serde_json::from_value(metadata).map_err(|source| ReadError::Metadata {
            stream: stream_id.clone(),
            version,
            source,
        })?;
    let schema_version = u32::try_from(schema_version).map_err(|_| ReadError::Corrupt {
        detail: format!(
            "negative schema version {schema_version} at version {version} of `{stream_id}`"
        ),
    })?;
    let event = E::decode(&event_type, schema_version, payload)
        .map_err(|source| ReadError::decode(stream_id.clone(), version, position, source))?;
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

/// The log position of a row: its transaction id, then its sequence number.
pub(crate) fn log_position(transaction: &str, position: i64) -> Result<Position, ReadError> {
    let transaction = transaction.parse::<u64>().map_err(|_| ReadError::Corrupt {
        detail: format!("transaction id {transaction:?} is not a number"),
    })?;
    Ok(Position::from_parts(
        transaction,
        non_negative(position, "position")?,
    ))
}

fn non_negative(value: i64, what: &str) -> Result<u64, ReadError> {
    u64::try_from(value).map_err(|_| ReadError::Corrupt {
        detail: format!("negative {what} {value}"),
    })
}

/// A position's parts as the two bigints PostgreSQL stores.
pub(crate) fn position_parts(position: Position) -> Option<(i64, i64)> {
    let (major, minor) = position.parts();
    Some((i64::try_from(major).ok()?, i64::try_from(minor).ok()?))
}
