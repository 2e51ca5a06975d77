//! The store the service runs on, in memory or in PostgreSQL, behind one type.
//!
//! [`Repository`] and the store traits are generic over the store; the handlers, their
//! OpenAPI descriptions and the state axum shares are simpler without a type parameter, so
//! this module dispatches the handful of operations the service uses to whichever store it
//! was started on.

use std::time::Duration;

use es_core::{
    AsOf, CommandContext, CommandError, CommandOutcome, EventEnvelope, EventFilter,
    EventStore as _, LoadError, Loaded, Position, RawEvent, ReadError, Repository, RetryPolicy,
    StatusHandle, StreamIdError, Version, WaitError,
};
use es_memory::MemoryEventStore;
use es_postgres::PgEventStore;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use orders::{Order, OrderCommand, OrderError, OrderEvent};

/// Which store the service runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The in-memory store: nothing survives the process.
    Memory(MemoryEventStore),
    /// PostgreSQL, with its schema migrated.
    Postgres(PgEventStore),
}

impl Backend {
    /// A fresh in-memory store.
    pub fn memory() -> Self {
        Self::Memory(MemoryEventStore::new())
    }

    /// A short name for logs and reports: `memory` or `postgres`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// The orders repository on either store.
#[derive(Debug, Clone)]
pub enum Orders {
    /// On the in-memory store.
    Memory(Repository<Order, MemoryEventStore>),
    /// On PostgreSQL.
    Postgres(Repository<Order, PgEventStore>),
}

/// Runs `$body` with `$repo` bound to whichever repository `$orders` holds.
macro_rules! dispatch {
    ($orders:expr, $repo:ident => $body:expr) => {
        match $orders {
            Orders::Memory($repo) => $body,
            Orders::Postgres($repo) => $body,
        }
    };
}

/// How long a history may be: an order has a handful of events, and a longer stream is
/// answered in part rather than held in memory whole.
pub const MAX_HISTORY: usize = 10_000;

impl Orders {
    /// The repository on `backend`, retrying conflicts and store failures as `retry` says.
    pub fn new(backend: &Backend, retry: RetryPolicy) -> Self {
        match backend {
            Backend::Memory(store) => {
                Self::Memory(Repository::new(store.clone()).with_retry_policy(retry))
            }
            Backend::Postgres(store) => {
                Self::Postgres(Repository::new(store.clone()).with_retry_policy(retry))
            }
        }
    }

    /// Executes `command` on order `id` in `context`.
    ///
    /// # Errors
    ///
    /// As [`Repository::execute_with`].
    pub async fn execute(
        &self,
        id: &str,
        command: OrderCommand,
        context: CommandContext,
    ) -> Result<CommandOutcome<OrderEvent>, CommandError<OrderError>> {
        dispatch!(self, repo => repo.execute_with(id, command, context).await)
    }

    /// Loads order `id`, now or as of a past version or time.
    ///
    /// # Errors
    ///
    /// As [`Repository::load_as_of`].
    pub async fn load(&self, id: &str, as_of: AsOf) -> Result<Loaded<Order>, LoadError> {
        dispatch!(self, repo => repo.load_as_of(id, as_of).await)
    }

    /// The events of order `id`, as stored (at most [`MAX_HISTORY`]).
    ///
    /// # Errors
    ///
    /// [`HistoryError::InvalidId`] for an id that makes no stream id, and
    /// [`HistoryError::Read`] when the store fails.
    pub async fn history(&self, id: &str) -> Result<Vec<EventEnvelope<RawEvent>>, HistoryError> {
        dispatch!(self, repo => {
            let stream = repo.stream_id(id)?;
            repo.store()
                .read_stream::<RawEvent>(&stream, Version::new(1))
                .take(MAX_HISTORY)
                .try_collect()
                .await
                .map_err(HistoryError::Read)
        })
    }

    /// Waits, up to `timeout`, until the runner behind `status` has seen `position`
    /// ([`StatusHandle::wait_for`] on this store).
    ///
    /// # Errors
    ///
    /// As [`StatusHandle::wait_for`].
    pub async fn wait_for(
        &self,
        status: &StatusHandle,
        position: Position,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        dispatch!(self, repo => status.wait_for(repo.store(), position, timeout).await)
    }

    /// The orders' events after `after`, first the history and then live, as stored.
    pub fn subscribe(
        &self,
        after: Position,
    ) -> BoxStream<'static, Result<EventEnvelope<RawEvent>, ReadError>> {
        let filter = EventFilter::for_aggregate::<Order>();
        dispatch!(self, repo => repo.store().subscribe::<RawEvent>(after, filter).boxed())
    }
}

/// Why an order's history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The id makes no stream id.
    #[error("invalid order id")]
    InvalidId(#[from] StreamIdError),
    /// The store failed.
    #[error(transparent)]
    Read(ReadError),
}
