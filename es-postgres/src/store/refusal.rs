//! Explaining a refused append: an idempotent repeat (success), an id stored elsewhere,
//! an archived stream, or a lost race, told by one statement (`sql/refusal.sql`) and,
//! only for a repeat or a clash, a read of the stored events.

use es_core::{
    AppendError, Committed, DomainEvent, ExpectedVersion, NewEvent, StoreError, StreamId, Version,
};
use sqlx::{FromRow as _, Row as _};

use super::PgEventStore;
use super::append::Batch;
use crate::error::store_error;
use crate::inner::statement;
use crate::row::{self, EventRow};

impl PgEventStore {
    /// Explains a refused append: the batch is already stored (an idempotent repeat, which
    /// is success), an id is taken, or the version did not match.
    pub(super) async fn classify<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
        events: &[NewEvent<E>],
    ) -> Result<Committed<E>, AppendError> {
        let row = statement!(self.inner, |c| {
            sqlx::query(self.inner.sql.refusal.clone())
                .bind(stream.as_str())
                .bind(&batch.ids)
                .fetch_one(c)
        })
        .await
        .map_err(|e| AppendError::Store {
            stream: stream.clone(),
            source: store_error("append", e).with_context(format!("stream `{stream}`")),
        })?;
        let read = |column: &str| -> Result<i64, AppendError> {
            row.try_get(column).map_err(|e| AppendError::Store {
                stream: stream.clone(),
                source: StoreError::new("append", row::unexpected(&e)),
            })
        };
        let (stored, version) = (read("stored")?, read("version")?);
        // Only a repeat (a lost reply) or a clash of ids reads the stored events.
        if stored > 0
            && let Some(repeat) = self.find_stored(stream, batch, events).await?
        {
            return Ok(repeat);
        }
        let archived: bool = row.try_get("archived").map_err(|e| AppendError::Store {
            stream: stream.clone(),
            source: StoreError::new("append", row::unexpected(&e)),
        })?;
        if archived {
            return Err(AppendError::Archived {
                stream: stream.clone(),
            });
        }
        Err(AppendError::Conflict {
            stream: stream.clone(),
            expected,
            actual: Version::new(u64::try_from(version).unwrap_or_default()),
        })
    }

    /// `Ok(None)` if none of the batch's ids is stored; the stored events if all are, in
    /// this stream, as one run; an error otherwise.
    ///
    /// Where the ids are is decided from the rows' plain columns: the stored events may be
    /// of another type (another category's), which only a true repeat needs to decode.
    pub(super) async fn find_stored<E: DomainEvent>(
        &self,
        stream: &StreamId,
        batch: &Batch,
        events: &[NewEvent<E>],
    ) -> Result<Option<Committed<E>>, AppendError> {
        let store_failure = |source: StoreError| AppendError::Store {
            stream: stream.clone(),
            source: source.with_context(format!("stream `{stream}`")),
        };
        let rows = statement!(self.inner, |c| {
            sqlx::query(self.inner.sql.find_events.clone())
                .bind(&batch.ids)
                .fetch_all(c)
        })
        .await
        .map_err(|e| store_failure(store_error("append", e)))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut placed = Vec::with_capacity(rows.len());
        for row in &rows {
            let row = EventRow::from_row(row)
                .map_err(|e| store_failure(StoreError::new("append", row::unexpected(&e))))?;
            placed.push((row.event_id, row.stream_id, row.version));
        }
        // The batch in order, all in this stream, at consecutive versions.
        let is_repeat = placed.len() == events.len()
            && placed.iter().zip(events).enumerate().all(|(i, (p, e))| {
                p.1 == stream.as_str() && p.0 == e.event_id && p.2 == placed[0].2 + i as i64
            });
        if !is_repeat {
            let (event_id, stored_in, version) = placed
                .iter()
                .find(|p| p.1 != stream.as_str())
                .unwrap_or(&placed[0]);
            return Err(AppendError::DuplicateEventId {
                event_id: *event_id,
                stream: stream.clone(),
                existing_stream: StreamId::parse(stored_in)
                    .map_err(|e| store_failure(StoreError::new("append", e)))?,
                existing_version: Version::new(u64::try_from(*version).unwrap_or_default()),
            });
        }
        let stored = rows
            .iter()
            .map(|row| row::envelope::<E>(row, Some(stream)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| store_failure(StoreError::new("idempotent append", e)))?;
        let version = stored.last().map_or(Version::INITIAL, |e| e.version);
        Ok(Some(Committed {
            stream_id: stream.clone(),
            version,
            events: stored,
            duplicate: true,
        }))
    }
}
