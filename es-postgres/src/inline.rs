//! Inline projections: read models updated in the very transaction that appends the
//! events, for views that must reflect a write as soon as the append returns.

use es_core::error::BoxError;
use es_core::{EventEnvelope, EventFilter, RawEvent};
use futures_util::future::BoxFuture;
use sqlx::postgres::PgConnection;

/// A read model updated inside the append's transaction (read-your-writes).
///
/// Register it with [`PgEventStoreBuilder::inline_projection`](crate::PgEventStoreBuilder::inline_projection):
/// every append that has events the projection selects then runs in one transaction that
/// inserts the events and calls [`handle`](PgInlineProjection::handle) with them; if the
/// projection fails, the append fails and stores nothing. Keep inline projections small:
/// their work lengthens every append they see (and an append with one turns from a single
/// statement into a transaction). Events arrive as [`RawEvent`]s, since one store holds
/// many event types; decode them with [`RawEvent::into_event`].
///
/// ```no_run
/// use es_core::error::BoxError;
/// use es_core::{EventEnvelope, EventFilter, RawEvent};
/// use es_postgres::{PgEventStore, PgInlineProjection};
/// use futures_util::future::BoxFuture;
/// use sqlx::PgConnection;
/// use std::sync::Arc;
///
/// /// The current balance of every account, always up to date with the log.
/// struct Balances;
///
/// impl PgInlineProjection for Balances {
///     fn name(&self) -> &str {
///         "balances"
///     }
///
///     fn filter(&self) -> EventFilter {
///         EventFilter::all().with_categories(["account"])
///     }
///
///     fn handle<'a>(&'a self, tx: &'a mut PgConnection, events: &'a [EventEnvelope<RawEvent>]) -> BoxFuture<'a, Result<(), BoxError>> {
///         Box::pin(async move {
///             for event in events {
///                 let amount = event.event.payload["amount"].as_i64().unwrap_or(0);
///                 sqlx::query(
///                     "INSERT INTO balances (account, balance) VALUES ($1, $2)
///                      ON CONFLICT (account) DO UPDATE SET balance = balances.balance + $2",
///                 )
///                 .bind(event.stream_id.id())
///                 .bind(amount)
///                 .execute(&mut *tx)
///                 .await?;
///             }
///             Ok(())
///         })
///     }
/// }
///
/// # fn example(pool: sqlx::PgPool) {
/// let store = PgEventStore::builder(pool).inline_projection(Arc::new(Balances)).build();
/// # }
/// ```
pub trait PgInlineProjection: Send + Sync + 'static {
    /// Its name, for errors and logs.
    fn name(&self) -> &str;

    /// The events it sees (by default all): categories and event types. A partition in
    /// it is judged by [`Partition::of`](es_core::Partition::of), not by the hash the
    /// store's log reads use, so the streams it selects differ from those of a runner on
    /// the same partition; inline projections are not meant to be partitioned.
    fn filter(&self) -> EventFilter {
        EventFilter::all()
    }

    /// Updates the read model with the events of one append (those the filter selects),
    /// through `tx`, the append's transaction.
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope<RawEvent>],
    ) -> BoxFuture<'a, Result<(), BoxError>>;
}
