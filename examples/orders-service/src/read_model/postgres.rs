//! The read model as a PostgreSQL table beside the store's, written by a
//! [`PgTransactionalProjection`](es_postgres::PgTransactionalProjection): each batch of
//! events and the checkpoint commit in one transaction, so no event is lost or applied
//! twice whatever crashes when.

use std::sync::Arc;

use es_core::error::BoxError;
use es_core::{EventEnvelope, EventFilter};
use es_postgres::{PgEventStore, PgProjection};
use orders::{Order, OrderEvent};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, SqlSafeStr as _, SqlStr};

use crate::api::{OrderRow, Status};

/// The statements, with the store's schema in place.
#[derive(Debug)]
struct Statements {
    create: SqlStr,
    placed: SqlStr,
    paid: SqlStr,
    status: SqlStr,
    list: SqlStr,
    reset: SqlStr,
}

impl Statements {
    fn for_store(store: &PgEventStore) -> Self {
        // The schema name is validated by `PgSchemaName` (a plain lowercase identifier),
        // and quoted: safe to splice where a bind parameter cannot go.
        let schema = format!("\"{}\"", store.schema().as_str());
        let complete = |text: &str| AssertSqlSafe(text.replace("{schema}", &schema)).into_sql_str();
        Self {
            create: complete(include_str!("../sql/create_orders_by_status.sql")),
            placed: complete(include_str!("../sql/order_placed.sql")),
            paid: complete(include_str!("../sql/order_paid.sql")),
            status: complete(include_str!("../sql/order_status.sql")),
            list: complete(include_str!("../sql/list_orders.sql")),
            reset: complete(include_str!("../sql/reset_orders.sql")),
        }
    }
}

/// The orders-by-status table, and the projection that writes it.
#[derive(Debug, Clone)]
pub struct PgOrderList {
    pool: PgPool,
    sql: Arc<Statements>,
}

/// Why the read model's table could not be created or read.
#[derive(Debug, thiserror::Error)]
pub enum PgReadModelError {
    /// The database failed.
    #[error("the orders read model's table cannot be {action}")]
    Database {
        /// `created` or `read`.
        action: &'static str,
        /// What sqlx reported.
        #[source]
        source: sqlx::Error,
    },
    /// A row holds a status the service does not know.
    #[error("order `{order_id}` has an unknown status in the read model; rebuild it")]
    UnknownStatus {
        /// The order.
        order_id: String,
    },
}

impl PgReadModelError {
    /// Whether the database was unreachable or timed out, rather than refusing.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Database {
                source: sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_),
                ..
            }
        )
    }
}

impl PgOrderList {
    /// The read model in `store`'s schema, its table created if missing.
    ///
    /// # Errors
    ///
    /// Fails if the table cannot be created.
    pub async fn create(store: &PgEventStore) -> Result<Self, PgReadModelError> {
        let sql = Arc::new(Statements::for_store(store));
        sqlx::raw_sql(sql.create.clone())
            .execute(store.pool())
            .await
            .map_err(|source| PgReadModelError::Database {
                action: "created",
                source,
            })?;
        Ok(Self {
            pool: store.pool().clone(),
            sql,
        })
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
                .map_err(|source| PgReadModelError::Database {
                    action: "read",
                    source,
                })?;
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
