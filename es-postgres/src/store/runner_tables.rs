//! The runner's tables: checkpoints, parked events and leases.

use std::time::Duration;

use es_core::{
    CheckpointStore, DeadLetterStore, LeaseStore, ParkedEvent, Position, StoreError, StreamId,
    Version,
};
use sqlx::{Row as _, SqlStr};
use uuid::Uuid;

use super::PgEventStore;
use crate::error::store_error;
use crate::inner::statement;
use crate::row::position_parts;

impl CheckpointStore for PgEventStore {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
        let row = statement!(self.inner, |c| {
            sqlx::query(self.inner.sql.load_checkpoint.clone())
                .bind(name)
                .fetch_optional(c)
        })
        .await
        .map_err(|e| store_error("checkpoint load", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let decode = |e: sqlx::Error| store_error("checkpoint load", e);
        let major: i64 = row.try_get("position_major").map_err(decode)?;
        let minor: i64 = row.try_get("position_minor").map_err(decode)?;
        Ok(Some(Position::from_parts(
            u64::try_from(major).unwrap_or_default(),
            u64::try_from(minor).unwrap_or_default(),
        )))
    }

    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), StoreError> {
        let (major, minor) = position_parts(position).ok_or_else(|| {
            StoreError::new(
                "checkpoint save",
                format!("position {position} does not fit in PostgreSQL bigints"),
            )
        })?;
        statement!(self.inner, |c| {
            sqlx::query(self.inner.sql.save_checkpoint.clone())
                .bind(name)
                .bind(major)
                .bind(minor)
                .execute(c)
        })
        .await
        .map_err(|e| store_error("checkpoint save", e))?;
        Ok(())
    }

    async fn delete_checkpoint(&self, name: &str) -> Result<(), StoreError> {
        statement!(self.inner, |c| {
            sqlx::query(self.inner.sql.delete_checkpoint.clone())
                .bind(name)
                .execute(c)
        })
        .await
        .map_err(|e| store_error("checkpoint delete", e))?;
        Ok(())
    }
}

impl DeadLetterStore for PgEventStore {
    async fn park(&self, parked: ParkedEvent) -> Result<(), StoreError> {
        let parked = &parked;
        let context = format!(
            "event {} of projection `{}`",
            parked.event_id, parked.projection
        );
        let (major, minor) = position_parts(parked.position).ok_or_else(|| {
            StoreError::new("park", "position beyond bigint").with_context(context.clone())
        })?;
        let version = i64::try_from(parked.version.get()).unwrap_or(i64::MAX);
        let attempts = i32::try_from(parked.attempts).unwrap_or(i32::MAX);
        statement!(self.inner, |c| {
            sqlx::query(self.inner.sql.park.clone())
                .bind(&parked.projection)
                .bind(parked.event_id)
                .bind(parked.stream_id.as_str())
                .bind(version)
                .bind(major)
                .bind(minor)
                .bind(&parked.event_type)
                .bind(&parked.error)
                .bind(attempts)
                .bind(parked.parked_at)
                .execute(c)
        })
        .await
        .map_err(|e| store_error("park", e).with_context(context))?;
        Ok(())
    }

    async fn parked(&self, projection: &str) -> Result<Vec<ParkedEvent>, StoreError> {
        let failed = |e: sqlx::Error| {
            store_error("parked events read", e).with_context(format!("projection `{projection}`"))
        };
        let rows = statement!(self.inner, |c| {
            sqlx::query(self.inner.sql.parked.clone())
                .bind(projection)
                .fetch_all(c)
        })
        .await
        .map_err(failed)?;
        let mut parked = Vec::with_capacity(rows.len());
        for row in rows {
            let stream: String = row.try_get("stream_id").map_err(failed)?;
            let version: i64 = row.try_get("version").map_err(failed)?;
            let major: i64 = row.try_get("position_major").map_err(failed)?;
            let minor: i64 = row.try_get("position_minor").map_err(failed)?;
            let attempts: i32 = row.try_get("attempts").map_err(failed)?;
            parked.push(ParkedEvent {
                projection: projection.to_owned(),
                event_id: row.try_get("event_id").map_err(failed)?,
                stream_id: StreamId::parse(&stream)
                    .map_err(|e| StoreError::new("parked events read", e))?,
                version: Version::new(u64::try_from(version).unwrap_or_default()),
                position: Position::from_parts(
                    u64::try_from(major).unwrap_or_default(),
                    u64::try_from(minor).unwrap_or_default(),
                ),
                event_type: row.try_get("event_type").map_err(failed)?,
                error: row.try_get("error").map_err(failed)?,
                attempts: u32::try_from(attempts).unwrap_or_default(),
                parked_at: row.try_get("parked_at").map_err(failed)?,
            });
        }
        Ok(parked)
    }

    async fn unpark(&self, projection: &str, event_id: Uuid) -> Result<(), StoreError> {
        statement!(self.inner, |c| {
            sqlx::query(self.inner.sql.unpark.clone())
                .bind(projection)
                .bind(event_id)
                .execute(c)
        })
        .await
        .map_err(|e| {
            store_error("unpark", e)
                .with_context(format!("event {event_id} of projection `{projection}`"))
        })?;
        Ok(())
    }
}

/// The longest lease the store records: longer TTLs are cut to it.
const LONGEST_LEASE: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

impl PgEventStore {
    /// Runs `sql`, a lease statement binding name, owner and milliseconds, which returns a
    /// row when `owner` holds the lease afterwards.
    async fn lease_statement(
        &self,
        sql: &SqlStr,
        operation: &'static str,
        name: &str,
        owner: Uuid,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        // PostgreSQL's intervals and timestamps end long before `Duration::MAX` (which
        // failed with "interval out of range"); a century is as good as never expiring.
        let ttl = ttl.min(LONGEST_LEASE);
        let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let held = statement!(self.inner, |c| {
            sqlx::query(sql.clone())
                .bind(name)
                .bind(owner)
                .bind(millis)
                .fetch_optional(c)
        })
        .await
        .map_err(|e| store_error(operation, e).with_context(format!("lease `{name}`")))?;
        Ok(held.is_some())
    }
}

impl LeaseStore for PgEventStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: Uuid,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.lease_statement(&self.inner.sql.acquire_lease, "lease", name, owner, ttl)
            .await
    }

    async fn renew_lease(
        &self,
        name: &str,
        owner: Uuid,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.lease_statement(
            &self.inner.sql.renew_lease,
            "lease renewal",
            name,
            owner,
            ttl,
        )
        .await
    }

    async fn release_lease(&self, name: &str, owner: Uuid) -> Result<(), StoreError> {
        statement!(self.inner, |c| {
            sqlx::query(self.inner.sql.release_lease.clone())
                .bind(name)
                .bind(owner)
                .execute(c)
        })
        .await
        .map_err(|e| store_error("lease release", e).with_context(format!("lease `{name}`")))?;
        Ok(())
    }
}
