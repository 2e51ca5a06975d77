//! [`Checkout`]: a connection taken from the pool for one call, which goes back only if the
//! call finished.
//!
//! A call cut short (by the reply deadline, or a caller that went away) may leave a
//! statement in flight and its replies unread. sqlx would pool such a connection again
//! after checking it with a ping that has no deadline of its own: on a network gone silent
//! that ping waits as long as TCP does (a quarter of an hour), holding the pool slot, and
//! a store whose calls all time out would keep every slot for that long. So a checkout
//! that did not finish closes its connection instead; the server ends whatever the session
//! had open. That costs a reconnect after a cut, and nothing otherwise.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};

use crate::error::no_reply;

/// A pooled connection that is closed, not pooled, unless [`finish`](Checkout::finish)ed.
pub(crate) struct Checkout {
    connection: PoolConnection<Postgres>,
    finished: bool,
}

impl Checkout {
    /// A connection from `pool` (waiting as long as the pool's acquire timeout).
    pub(crate) async fn take(pool: &PgPool) -> Result<Self, sqlx::Error> {
        // Boxed, as sqlx's own pool calls box it: the acquire's state is kilobytes, which
        // would otherwise sit in every future that takes a connection.
        Ok(Self {
            connection: Box::pin(pool.acquire()).await?,
            finished: false,
        })
    }

    /// The call finished: the connection may serve others once this is dropped.
    pub(crate) fn finish(&mut self) {
        self.finished = true;
    }
}

impl Deref for Checkout {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.connection
    }
}

impl DerefMut for Checkout {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.connection
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if !self.finished {
            self.connection.close_on_drop();
        }
    }
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("finished", &self.finished)
            .finish()
    }
}

/// What `future` gives, unless `deadline` passes first (`None`; whatever the future held
/// is then dropped: a [`Checkout`] or a transaction closes its connection).
pub(crate) async fn before<F: Future>(deadline: Option<Duration>, future: F) -> Option<F::Output> {
    match deadline {
        None => Some(future.await),
        Some(deadline) => tokio::time::timeout(deadline, future).await.ok(),
    }
}

/// `future`, unless `deadline` passes first: then a [`no_reply`] error.
pub(crate) async fn within<T>(
    deadline: Option<Duration>,
    future: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    before(deadline, future)
        .await
        .unwrap_or_else(|| Err(no_reply(deadline.unwrap_or_default())))
}
