//! What [`PgAdmin`] tells about projections: their checkpoints, lag, leases and parked
//! events, and forgetting a checkpoint for a rebuild.

use chrono::{DateTime, Utc};
use es_core::{
    DeadLetterStore as _, EventFilter, EventStore as _, ParkedEvent, Partition, Position,
    StoreError,
};
use sqlx::Row as _;
use uuid::Uuid;

use super::PgAdmin;
use crate::checkout::within;
use crate::error::{retry_serialization_failures, store_error};
use crate::inner::statement;
use crate::tx::PgTx;

/// One projection (or other consumer of the log with a checkpoint, lease or parked
/// events), as [`PgAdmin::projections`] finds it in the store's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgProjectionInfo {
    /// Its checkpoint key: the projection's name, followed by `#index/count` for a runner
    /// of one partition.
    pub name: String,
    /// The last position it committed, if it has a checkpoint in the store.
    pub checkpoint: Option<Position>,
    /// When that checkpoint last moved.
    pub checkpoint_updated_at: Option<DateTime<Utc>>,
    /// Events after the checkpoint (all of the log without one) that readers can be
    /// given now, of any type and in streams not archived (for a partition's key, of its
    /// partition only): an upper bound of what the projection has yet to handle, as it may
    /// read only some event types. Events held back behind open transactions are not
    /// counted until they are readable ([`PgEventStore::horizon`] tells how many wait).
    ///
    /// [`PgEventStore::horizon`]: crate::PgEventStore::horizon
    pub lag: u64,
    /// Its lease, if it has one: which runner instance runs it.
    pub lease: Option<PgLeaseInfo>,
    /// How many events it parked.
    pub parked: u64,
    /// The error of the event it parked last, if any.
    pub last_error: Option<String>,
    /// When it parked that event (or last retried it).
    pub last_parked_at: Option<DateTime<Utc>>,
}

/// A projection's lease: which runner instance holds it, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgLeaseInfo {
    /// The runner instance (a fresh id per runner).
    pub owner: Uuid,
    /// When the lease runs out unless renewed.
    pub expires_at: DateTime<Utc>,
    /// Whether it is still held, by the server's clock: a runner holding it is running
    /// (or crashed less than a lease term ago).
    pub held: bool,
}

/// The columns `sql/admin_projections.sql` feeds [`PgProjectionInfo`] from.
#[cfg(test)]
pub(crate) const PROJECTION_COLUMNS: &[&str] = &[
    "name",
    "position_major",
    "position_minor",
    "updated_at",
    "lease_owner",
    "lease_expires_at",
    "lease_held",
    "parked",
    "last_error",
    "last_parked_at",
];

impl PgAdmin {
    /// Every projection the store's tables know of (by a checkpoint, a lease or parked
    /// events), by name, with its lag ([`PgProjectionInfo::lag`]).
    ///
    /// # Errors
    ///
    /// Fails if the server cannot be queried.
    pub async fn projections(&self) -> Result<Vec<PgProjectionInfo>, StoreError> {
        let inner = &self.store.inner;
        let failed = |e| store_error("list projections", e);
        let rows = statement!(inner, |c| {
            sqlx::query(inner.sql.admin_projections.clone()).fetch_all(c)
        })
        .await
        .map_err(failed)?;
        let mut projections = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.try_get("name").map_err(failed)?;
            let major: Option<i64> = row.try_get("position_major").map_err(failed)?;
            let minor: Option<i64> = row.try_get("position_minor").map_err(failed)?;
            let checkpoint = major.zip(minor).map(|(major, minor)| {
                Position::from_parts(
                    u64::try_from(major).unwrap_or_default(),
                    u64::try_from(minor).unwrap_or_default(),
                )
            });
            let owner: Option<Uuid> = row.try_get("lease_owner").map_err(failed)?;
            let expires_at: Option<DateTime<Utc>> =
                row.try_get("lease_expires_at").map_err(failed)?;
            let lease = match (owner, expires_at) {
                (Some(owner), Some(expires_at)) => Some(PgLeaseInfo {
                    owner,
                    expires_at,
                    held: row.try_get("lease_held").map_err(failed)?,
                }),
                _ => None,
            };
            let parked: Option<i64> = row.try_get("parked").map_err(failed)?;
            let lag = self
                .store
                .count_after(checkpoint.unwrap_or(Position::START), filter_of(&name))
                .await
                .map_err(|e| StoreError::new("list projections", e))?;
            projections.push(PgProjectionInfo {
                checkpoint,
                checkpoint_updated_at: row.try_get("updated_at").map_err(failed)?,
                lag,
                lease,
                parked: u64::try_from(parked.unwrap_or_default()).unwrap_or_default(),
                last_error: row.try_get("last_error").map_err(failed)?,
                last_parked_at: row.try_get("last_parked_at").map_err(failed)?,
                name,
            });
        }
        Ok(projections)
    }

    /// The projection under checkpoint key `name`, if the store's tables know of it.
    ///
    /// # Errors
    ///
    /// Fails if the server cannot be queried.
    pub async fn projection(&self, name: &str) -> Result<Option<PgProjectionInfo>, StoreError> {
        Ok(self
            .projections()
            .await?
            .into_iter()
            .find(|projection| projection.name == name))
    }

    /// The parked events of `projection`, or of every projection, by projection name and
    /// then in log order.
    ///
    /// # Errors
    ///
    /// Fails if the server cannot be queried.
    pub async fn parked(&self, projection: Option<&str>) -> Result<Vec<ParkedEvent>, StoreError> {
        let names = match projection {
            Some(name) => vec![name.to_owned()],
            None => {
                let inner = &self.store.inner;
                statement!(inner, |c| {
                    sqlx::query_scalar(inner.sql.admin_parked_names.clone()).fetch_all(c)
                })
                .await
                .map_err(|e| store_error("parked events read", e))?
            }
        };
        let mut parked = Vec::new();
        for name in names {
            parked.extend(self.store.parked(&name).await?);
        }
        Ok(parked)
    }

    /// Every lease key projection `name` may run under, as far as the store's tables tell:
    /// `name` itself, and, for each partition count its partitioned runners used (by a
    /// checkpoint, a lease or parked events), every partition's `name#number/count`, in
    /// name order. A tool that resets the projection holds all of them meanwhile, so that
    /// no runner of any partition writes into the read model it empties.
    ///
    /// # Errors
    ///
    /// Fails if the server cannot be queried.
    pub async fn lease_keys(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let inner = &self.store.inner;
        let failed = |e| store_error("list projections", e);
        let rows = statement!(inner, |c| {
            sqlx::query(inner.sql.admin_projections.clone()).fetch_all(c)
        })
        .await
        .map_err(failed)?;
        // A count beyond this is no deployment's (a key written by hand, say): its keys
        // found are kept, without naming every sibling.
        const MOST_SIBLINGS: u32 = 1024;
        let mut keys = std::collections::BTreeSet::from([name.to_owned()]);
        for row in rows {
            let key: String = row.try_get("name").map_err(failed)?;
            if let Some(partition) = partition_of(name, &key) {
                if partition.count() <= MOST_SIBLINGS {
                    keys.extend(Partition::all(partition.count()).map(|p| format!("{name}#{p}")));
                }
                keys.insert(key);
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Forgets the checkpoints of projection `name` (its own and every partition's, as a
    /// rebuild does), so that its next runner starts at the beginning of the log. Its read
    /// model is left as it is: empty it first, or the projection sees every event again
    /// on top of what it holds. Returns how many checkpoints were forgotten.
    ///
    /// It takes no lease: a runner still going saves its checkpoint again at its next
    /// commit. Hold the projection's [leases](PgAdmin::lease_keys) meanwhile.
    ///
    /// # Errors
    ///
    /// Fails if the server cannot be queried.
    pub async fn forget_checkpoints(&self, name: &str) -> Result<u64, StoreError> {
        let inner = &self.store.inner;
        let deadline = inner.reply_timeout;
        // In a transaction of the store's own, which closes its connection if this call is
        // dropped before COMMIT (an operator's Ctrl-C, a fence that lapsed): the server then
        // rolls the delete back, even one still waiting on a lock. A lone statement would
        // commit whenever it got its lock, after its caller had given up and released the
        // leases that kept runners off.
        retry_serialization_failures(|| async move {
            let mut tx = within(deadline, PgTx::begin(&inner.pool)).await?;
            let done = within(
                deadline,
                sqlx::query(inner.sql.projection_reset.clone())
                    .bind(name)
                    .execute(&mut *tx),
            )
            .await;
            match done {
                Ok(done) => {
                    within(deadline, tx.commit()).await?;
                    Ok(done.rows_affected())
                }
                Err(error) => {
                    let _ = within(deadline, tx.rollback()).await;
                    Err(error)
                }
            }
        })
        .await
        .map_err(|e| {
            store_error("checkpoint delete", e).with_context(format!("projection `{name}`"))
        })
    }
}

/// The partition a slice `number/count` names, as a partition's runner writes it after the
/// `#` of its key ([`Partition`]'s display: numbered from 1).
fn partition_in(slice: &str) -> Option<Partition> {
    let (number, count) = slice.split_once('/')?;
    let number: u32 = number.parse().ok()?;
    Partition::new(number.checked_sub(1)?, count.parse().ok()?)
}

/// The events a consumer under checkpoint key `name` may read, as far as the key tells:
/// all of them, or one partition's for a key `projection#number/count`.
fn filter_of(name: &str) -> EventFilter {
    let partition = name
        .rsplit_once('#')
        .and_then(|(_, slice)| partition_in(slice));
    match partition {
        Some(partition) => EventFilter::all().with_partition(partition),
        None => EventFilter::all(),
    }
}

/// The partition of projection `name` whose key `key` is (`name#number/count`), if it is one.
fn partition_of(name: &str, key: &str) -> Option<Partition> {
    key.strip_prefix(name)?
        .strip_prefix('#')
        .and_then(partition_in)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_key_reads_its_partition_only() {
        assert_eq!(filter_of("orders").partition(), None);
        assert_eq!(
            filter_of("orders#1/4").partition(),
            Partition::new(0, 4),
            "the slice after the last `#`, numbered from 1 as the runner writes it"
        );
        assert_eq!(filter_of("orders#4/4").partition(), Partition::new(3, 4));
        for key in ["orders#v2", "orders#0/4", "orders#5/4"] {
            assert_eq!(filter_of(key).partition(), None, "{key}: no such partition");
        }
        for partition in Partition::all(3) {
            assert_eq!(
                filter_of(&format!("orders#{partition}")).partition(),
                Some(partition),
                "the key a runner of {partition} has"
            );
        }
    }

    #[test]
    fn partition_keys_are_their_projections_only() {
        assert_eq!(partition_of("orders", "orders#2/4"), Partition::new(1, 4));
        for key in [
            "orders",
            "orders#v2",
            "orders2#1/4",
            "order#1/4",
            "orders#1/4x",
        ] {
            assert_eq!(partition_of("orders", key), None, "{key}");
        }
    }
}
