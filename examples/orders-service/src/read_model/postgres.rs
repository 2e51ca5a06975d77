//! The read model as a PostgreSQL table beside the store's, written by a
//! [`PgTransactionalProjection`](es_postgres::PgTransactionalProjection): each batch of
//! events and the checkpoint commit in one transaction, so no event is lost or applied
//! twice whatever crashes when.

use std::sync::Arc;

use es_core::error::BoxError;
use es_core::{EventEnvelope, EventFilter};
use es_postgres::{
    PgEventStore, PgInvalidTableName, PgMigration, PgProjection, PgProjectionError, PgTable,
};
use orders::{Order, OrderEvent};
use sqlx::{PgConnection, PgPool, SqlStr};

use crate::api::{OrderRow, Status};

/// The read model's table, in the store's schema.
pub const TABLE: &str = "orders_by_status";

/// The table's steps, in order of version, applied once per schema (by
/// [`PgOrderList::prepare`] at start, and by the runner before its first batch). A step
/// that ran is never edited: a change to the table is a new step.
pub const MIGRATIONS: &[PgMigration] = &[PgMigration::new(
    1,
    "orders by status",
    include_str!("../sql/create_orders_by_status.sql"),
)];

/// The statements, completed once with the table's quoted, schema-qualified name.
#[derive(Debug)]
struct Statements {
    placed: SqlStr,
    paid: SqlStr,
    status: SqlStr,
    list: SqlStr,
    reset: SqlStr,
}

impl Statements {
    fn for_table(table: &PgTable) -> Self {
        Self {
            placed: table.sql(include_str!("../sql/order_placed.sql")),
            paid: table.sql(include_str!("../sql/order_paid.sql")),
            status: table.sql(include_str!("../sql/order_status.sql")),
            list: table.sql(include_str!("../sql/list_orders.sql")),
            reset: table.sql(include_str!("../sql/reset_orders.sql")),
        }
    }
}

/// The orders-by-status table, and the projection that writes it.
#[derive(Debug, Clone)]
pub struct PgOrderList {
    pool: PgPool,
    sql: Arc<Statements>,
}

/// Why the read model's table could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum PgSetupError {
    /// Its migrations could not be applied: the database failed, or the schema recorded
    /// other steps than the service declares (the source says which, and what to do).
    #[error("the orders read model's table cannot be migrated")]
    Migrate(#[source] PgProjectionError),
    /// The table's name is not one PostgreSQL keeps whole.
    #[error(transparent)]
    Table(#[from] PgInvalidTableName),
}

/// Why the read model's table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PgReadModelError {
    /// The database failed.
    #[error("the orders read model's table cannot be read")]
    Database(#[source] sqlx::Error),
    /// A row holds a status the service does not know.
    #[error("order `{order_id}` has an unknown status in the read model; rebuild it")]
    UnknownStatus {
        /// The order.
        order_id: String,
    },
}

impl PgReadModelError {
    /// Whether the database was unreachable or timed out, rather than refusing: the
    /// store's own classification ([`es_postgres::is_transient`]), so the service answers
    /// 503 for a statement or lock timeout, a server shutting down or too many connections
    /// just as for a lost connection.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Database(error) if es_postgres::is_transient(error))
    }
}

impl PgOrderList {
    /// The read model in `store`'s schema. Its table is made by its
    /// [`migrations`](PgProjection::migrations), which the runner applies before its
    /// first batch; [`prepare`](Self::prepare) applies them before that.
    ///
    /// # Errors
    ///
    /// [`PgInvalidTableName`] if [`TABLE`] is not a valid name (it is).
    pub fn new(store: &PgEventStore) -> Result<Self, PgInvalidTableName> {
        let table = store.table(TABLE)?;
        Ok(Self {
            pool: store.pool().clone(),
            sql: Arc::new(Statements::for_table(&table)),
        })
    }

    /// The read model in `store`'s schema, its table there: the handlers may read it
    /// before the runner's first batch. Safe from several processes starting at once:
    /// they take turns, and the table is made once.
    ///
    /// # Errors
    ///
    /// [`PgSetupError::Migrate`] if the migrations cannot be applied.
    pub async fn prepare(store: &PgEventStore) -> Result<Self, PgSetupError> {
        let list = Self::new(store)?;
        store
            .migrate_read_model(super::NAME, MIGRATIONS)
            .await
            .map_err(PgSetupError::Migrate)?;
        Ok(list)
    }

    /// Up to `limit` orders by id, those in `status` only if given.
    ///
    /// # Errors
    ///
    /// Fails if the database fails or holds a status the service does not know.
    pub async fn list(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<OrderRow>, PgReadModelError> {
        let rows: Vec<(String, String, String, i64, i64, i64)> =
            sqlx::query_as(self.sql.list.clone())
                .bind(status.map(Status::as_str))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(PgReadModelError::Database)?;
        rows.into_iter()
            .map(
                |(order_id, customer, status, total_cents, paid_cents, version)| {
                    let Some(status) = Status::parse(&status) else {
                        return Err(PgReadModelError::UnknownStatus { order_id });
                    };
                    Ok(OrderRow {
                        order_id,
                        customer,
                        status,
                        total_cents,
                        paid_cents,
                        version: u64::try_from(version).unwrap_or_default(),
                    })
                },
            )
            .collect()
    }
}

impl PgProjection for PgOrderList {
    type Event = OrderEvent;

    fn name(&self) -> &str {
        super::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::for_aggregate::<Order>()
    }

    fn migrations(&self) -> &[PgMigration] {
        MIGRATIONS
    }

    async fn handle(
        &mut self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope<OrderEvent>,
    ) -> Result<(), BoxError> {
        let id = envelope.stream_id.id();
        let version = i64::try_from(envelope.version.get())?;
        let query = match &envelope.event {
            OrderEvent::Placed {
                customer,
                total_cents,
                ..
            } => sqlx::query(self.sql.placed.clone())
                .bind(id)
                .bind(customer)
                .bind(total_cents)
                .bind(version),
            OrderEvent::PaymentReceived { amount_cents, .. } => sqlx::query(self.sql.paid.clone())
                .bind(id)
                .bind(amount_cents)
                .bind(version),
            OrderEvent::Preparing { .. } => sqlx::query(self.sql.status.clone())
                .bind(id)
                .bind(Status::Preparing.as_str())
                .bind(version),
            OrderEvent::Shipped { .. } => sqlx::query(self.sql.status.clone())
                .bind(id)
                .bind(Status::Shipped.as_str())
                .bind(version),
        };
        query.execute(tx).await?;
        Ok(())
    }

    async fn reset(&mut self, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(self.sql.reset.clone()).execute(tx).await?;
        Ok(())
    }
}
