//! [`Inner`]: what every clone of a store shares (the pool, the statements, the wake-ups),
//! and the one way it runs a statement.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::checkout::{StorePool, within};
use crate::error::retry_serialization_failures;
use crate::health::ReaderHealth;
use crate::inline::PgInlineProjection;
use crate::schema::PgSchemaName;
use crate::sql::Statements;
use crate::wakeup::Wakeups;

pub(crate) struct Inner {
    pub(crate) pool: StorePool,
    pub(crate) schema: PgSchemaName,
    pub(crate) sql: Statements,
    pub(crate) page_size: i64,
    pub(crate) poll_interval: Duration,
    pub(crate) wakeups: Wakeups,
    pub(crate) inline: Vec<Arc<dyn PgInlineProjection>>,
    /// What the store's log readers last found.
    pub(crate) health: ReaderHealth,
    /// How long a call waits for the server's reply before it gives up (`None`: as long
    /// as the server takes).
    pub(crate) reply_timeout: Option<Duration>,
    /// Conditional appends found a session at another isolation level than READ
    /// COMMITTED: they begin a transaction at READ COMMITTED from then on.
    pub(crate) conditional_in_transaction: AtomicBool,
    /// The committer of coalesced commits, when they are on.
    pub(crate) coalesce: Option<crate::store::coalesce::Coalescer>,
}

impl Inner {
    /// Runs `statement` within the store's reply deadline, and again after serialization
    /// failures. Write it with `statement!`, which runs it on a
    /// [`Checkout`](crate::checkout::Checkout): one cut short
    /// by the deadline has its connection closed, not pooled.
    pub(crate) async fn run<T, F, Fut>(&self, mut statement: F) -> Result<T, sqlx::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let deadline = self.reply_timeout;
        retry_serialization_failures(|| within(deadline, statement())).await
    }
}

/// A statement for [`Inner::run`]: `statement!(inner, |c| query.fetch_one(c))` takes a
/// connection of its own (a [`Checkout`]), runs the query on it as `c`, and gives the
/// connection back only if the query finished and left it usable.
macro_rules! statement {
    ($inner:expr, |$connection:ident| $body:expr) => {{
        $inner.run(|| async move {
            let mut checkout = $crate::checkout::Checkout::take(&$inner.pool).await?;
            let $connection: &mut ::sqlx::postgres::PgConnection = &mut checkout;
            let result = $body.await;
            match &result {
                Ok(_) => checkout.finish(),
                Err(error) => checkout.finish_after(error),
            }
            result
        })
    }};
}

pub(crate) use statement;
