//! [`Inner`]: what every clone of a store shares (the pool, the statements, the wake-ups),
//! and the one way it runs a statement.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPool;

use crate::error::retry_serialization_failures;
use crate::health::ReaderHealth;
use crate::inline::PgInlineProjection;
use crate::schema::SchemaName;
use crate::sql::Statements;
use crate::wakeup::Wakeups;

pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    pub(crate) schema: SchemaName,
    pub(crate) sql: Statements,
    pub(crate) page_size: i64,
    pub(crate) poll_interval: Duration,
    pub(crate) wakeups: Wakeups,
    pub(crate) inline: Vec<Arc<dyn PgInlineProjection>>,
    /// What the store's log readers last found.
    pub(crate) health: ReaderHealth,
    /// How long a call waits for the server's reply before it gives up.
    pub(crate) reply_timeout: Duration,
}

impl Inner {
    /// Runs `statement` within the store's reply deadline, again after serialization
    /// failures (see [`retry_serialization_failures`]).
    pub(crate) async fn run<T, F, Fut>(&self, statement: F) -> Result<T, sqlx::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        retry_serialization_failures(self.reply_timeout, statement).await
    }
}
