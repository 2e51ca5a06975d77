//! [`SnapshotStore`] on PostgreSQL: one row per stream, never replaced by an older one.

use chrono::{DateTime, Utc};
use std::sync::Arc;

use es_core::{
    DomainEvent, LoadItem, ReadError, Snapshot, SnapshotStore, StoreError, StreamId, Version,
};
use futures_core::Stream;
use futures_util::StreamExt as _;
use serde_json::Value;
use sqlx::Row as _;

use super::PgEventStore;
use crate::error::store_error;
use crate::inner::statement;
use crate::row;
use crate::stream_reader::StreamReader;

impl SnapshotStore for PgEventStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let snapshot = &snapshot;
        let version = i64::try_from(snapshot.version.get())
            .map_err(|e| StoreError::new("snapshot save", e))?;
        let schema_version = i32::try_from(snapshot.schema_version)
            .map_err(|e| StoreError::new("snapshot save", e))?;
        statement!(self.inner, |c| {
            sqlx::query(self.inner.sql.save_snapshot.clone())
                .bind(snapshot.stream_id.as_str())
                .bind(version)
                .bind(schema_version)
                .bind(&snapshot.state)
                .bind(snapshot.taken_at)
                .execute(c)
        })
        .await
        .map_err(|e| store_error("snapshot save", e))?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let row = statement!(self.inner, |c| {
            sqlx::query(self.inner.sql.load_snapshot.clone())
                .bind(stream.as_str())
                .fetch_optional(c)
        })
        .await
        .map_err(|e| store_error("snapshot load", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let decode = |e: sqlx::Error| store_error("snapshot load", e);
        let version: i64 = row.try_get("version").map_err(decode)?;
        let schema_version: i32 = row.try_get("schema_version").map_err(decode)?;
        let state: Value = row.try_get("state").map_err(decode)?;
        let taken_at: DateTime<Utc> = row.try_get("taken_at").map_err(decode)?;
        Ok(Some(Snapshot {
            stream_id: stream.clone(),
            version: Version::new(u64::try_from(version).unwrap_or_default()),
            schema_version: u32::try_from(schema_version).unwrap_or_default(),
            state,
            taken_at,
        }))
    }

    /// One statement for the snapshot, the archive state and the first page of events
    /// (`sql/load_start.sql`), then pages of only the columns a load decodes. A snapshot
    /// row that cannot be read (a state nested too deeply to parse, a row written by
    /// hand) is left out with a warning and the stream loaded again without it, as the
    /// default does: the events after a start must be those after its snapshot.
    fn load_events<E: DomainEvent>(
        &self,
        stream: &StreamId,
        after: Version,
        snapshot: bool,
    ) -> impl Stream<Item = Result<LoadItem<E>, ReadError>> + Send + 'static + use<E> {
        let (inner, stream) = (Arc::clone(&self.inner), stream.clone());
        futures_util::stream::once(async move {
            let mut load = StreamReader::load(Arc::clone(&inner), stream.clone(), after, snapshot)
                .into_stream()
                .boxed();
            let first = load.next().await;
            if let Some(Err(error)) = &first
                && row::is_unreadable_snapshot(error)
            {
                tracing::warn!(%stream, error = error as &dyn std::error::Error, "cannot read snapshot; replaying events");
                return StreamReader::load(inner, stream, after, false)
                    .into_stream()
                    .boxed();
            }
            futures_util::stream::iter(first).chain(load).boxed()
        })
        .flatten()
    }
}
