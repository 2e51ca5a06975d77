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
/// An inline projection writes its read model only: it must not insert into the event log
/// (nor commit or roll back the transaction). A conditional append
/// ([`append_if`](es_core::EventStore::append_if)) tells younger conditional appends which
/// tags its batch carries, so that those on other tags need not wait for it; an event the
/// projection inserted in the same transaction would not be covered, and a decision could
/// miss it.
///
/// ```no_run
/// use es_core::error::BoxError;
/// use es_core::{EventEnvelope, EventFilter, RawEvent};
/// use es_postgres::{PgEventStore, PgInlineProjection, PgMigration, PgSchemaName, PgTable};
/// use futures_util::future::BoxFuture;
/// use sqlx::{PgConnection, SqlStr};
/// use std::sync::Arc;
///
/// const MIGRATIONS: &[PgMigration] = &[PgMigration::new(
///     1,
///     "balances",
///     "CREATE TABLE {schema}.balances (account text PRIMARY KEY, balance bigint NOT NULL)",
/// )];
///
/// /// The current balance of every account, always up to date with the log.
/// struct Balances {
///     add: SqlStr,
/// }
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
///     fn migrations(&self) -> &[PgMigration] {
///         MIGRATIONS
///     }
///
///     fn handle<'a>(&'a self, tx: &'a mut PgConnection, events: &'a [EventEnvelope<RawEvent>]) -> BoxFuture<'a, Result<(), BoxError>> {
///         Box::pin(async move {
///             for event in events {
///                 let amount = event.event.payload["amount"].as_i64().unwrap_or(0);
///                 sqlx::query(self.add.clone())
///                     .bind(event.stream_id.id())
///                     .bind(amount)
///                     .execute(&mut *tx)
///                     .await?;
///             }
///             Ok(())
///         })
///     }
/// }
///
/// # async fn example(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let table = PgTable::new(&PgSchemaName::default(), "balances")?;
/// let add = table.sql(
///     "INSERT INTO {table} (account, balance) VALUES ($1, $2)
///      ON CONFLICT (account) DO UPDATE SET balance = {table}.balance + $2",
/// );
/// let store = PgEventStore::builder(pool).inline_projection(Arc::new(Balances { add })).build();
/// store.migrate().await?; // the store's tables, then `balances`
/// # Ok(())
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

    /// The steps that make and change its tables, in order of version (none by default),
    /// as for a transactional projection ([`PgProjection::migrations`](crate::PgProjection::migrations)):
    /// [`PgEventStore::migrate`](crate::PgEventStore::migrate) applies those the schema
    /// lacks, after the store's own, recorded under the projection's
    /// [`name`](PgInlineProjection::name) (keep it apart from other read models' names).
    fn migrations(&self) -> &[crate::PgMigration] {
        &[]
    }

    /// Updates the read model with the events of one append (those the filter selects),
    /// through `tx`, the append's transaction.
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope<RawEvent>],
    ) -> BoxFuture<'a, Result<(), BoxError>>;
}
