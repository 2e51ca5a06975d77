//! Projections: folding events into query-optimised read models.
//!
//! A [`Projection`] handles envelopes in log order; a
//! [`ProjectionRunner`](crate::ProjectionRunner) feeds it from its checkpoint, keeps the
//! checkpoint, applies its error policy and can rebuild it. Test one with
//! [`ProjectionFixture`](crate::testing::ProjectionFixture) (feature `testing`).
//!
//! # At least once, or exactly once
//!
//! By default the runner keeps the checkpoint in the store's
//! [`CheckpointStore`](crate::CheckpointStore), saving it after each batch: a crash between
//! a read-model write and the next checkpoint hands the same events to the projection
//! again, so its writes must be idempotent (an upsert keyed by the stream, a version check).
//!
//! A projection whose read model lives in storage that can commit its checkpoint in the
//! same transaction as its writes keeps the checkpoint itself
//! ([`Projection::keeps_own_checkpoint`]): the runner then calls
//! [`commit`](Projection::commit) after each batch and [`rollback`](Projection::rollback)
//! after a failure, and no event is ever applied twice or lost, whatever crashes when. The
//! PostgreSQL store offers this for read models in the same database.

use std::future::{Future, ready};

use crate::event::{DomainEvent, EventEnvelope};
use crate::store::EventFilter;
use crate::stream::Position;

/// A read model built from events.
///
/// Implement [`name`](Projection::name) and [`handle`](Projection::handle); override
/// [`filter`](Projection::filter) to read only some categories or event types (by default a
/// projection reads the event types its `Event` type decodes, in every category).
///
/// ```
/// use es_core::{DomainEvent, EventEnvelope, EventFilter, Projection};
/// use std::collections::BTreeMap;
///
/// #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// enum OrderEvent {
///     Placed { total_cents: i64 },
///     Shipped,
/// }
///
/// #[derive(Debug, Default)]
/// struct OpenOrders {
///     open: BTreeMap<String, i64>,
/// }
///
/// impl Projection for OpenOrders {
///     type Event = OrderEvent;
///     type Error = std::convert::Infallible;
///
///     fn name(&self) -> &str {
///         "open-orders"
///     }
///
///     fn filter(&self) -> EventFilter {
///         EventFilter::all().with_categories(["order"])
///     }
///
///     async fn handle(&mut self, envelope: &EventEnvelope<OrderEvent>) -> Result<(), Self::Error> {
///         let order = envelope.stream_id.id().to_owned();
///         match envelope.event {
///             OrderEvent::Placed { total_cents } => { self.open.insert(order, total_cents); }
///             OrderEvent::Shipped => { self.open.remove(&order); }
///         }
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// use es_core::{EventStore, ExpectedVersion, NewEvent, ProjectionRunner, StreamId};
///
/// let store = es_memory::MemoryEventStore::new();
/// let first = StreamId::new("order", "1")?;
/// let second = StreamId::new("order", "2")?;
/// store.append(&first, ExpectedVersion::NoStream, vec![NewEvent::new(OrderEvent::Placed { total_cents: 500 })]).await?;
/// store.append(&second, ExpectedVersion::NoStream, vec![
///     NewEvent::new(OrderEvent::Placed { total_cents: 700 }),
///     NewEvent::new(OrderEvent::Shipped),
/// ]).await?;
///
/// let mut runner = ProjectionRunner::new(store, OpenOrders::default());
/// assert_eq!(runner.catch_up().await?, 3);
/// assert_eq!(runner.projection().open.iter().collect::<Vec<_>>(), [(&"1".to_owned(), &500)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Projection: Send {
    /// The events it reads: a typed enum, or [`RawEvent`](crate::RawEvent) for several
    /// categories at once.
    type Event: DomainEvent;

    /// Why handling an event failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The stable name under which its checkpoint (and parked events) are kept.
    fn name(&self) -> &str;

    /// The events it reads. By default, the event types `Self::Event` decodes (every event
    /// for [`RawEvent`](crate::RawEvent)); restrict to categories when event type names
    /// are shared between aggregates.
    fn filter(&self) -> EventFilter {
        EventFilter::for_event::<Self::Event>()
    }

    /// Updates the read model with one event.
    fn handle(
        &mut self,
        envelope: &EventEnvelope<Self::Event>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether `error`, from [`handle`](Projection::handle), is the projection's storage
    /// failing for a moment (a lost connection, a timeout) rather than the projection
    /// failing on the event: the runner then starts over from the last commit (a live
    /// runner after a pause; a catch-up returns the error) instead of counting it against
    /// the event and, in the end, parking a good event. By default, no error is.
    fn is_transient(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// Forgets the read model, before it is rebuilt from the start of the log. Projections
    /// that keep their own checkpoint forget it here too, under every key it was committed
    /// with (the name, and `name#index/count` for each partition).
    fn reset(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        ready(Ok(()))
    }

    /// Whether the projection keeps its checkpoint itself, committed with its writes in
    /// [`commit`](Projection::commit): exactly once in effect. When `false` (the default),
    /// the runner keeps it in the store and the projection sees an event again after a
    /// crash before the next checkpoint.
    fn keeps_own_checkpoint(&self) -> bool {
        false
    }

    /// The position the projection's own storage has committed under `key`, for
    /// projections that keep their own checkpoint.
    ///
    /// `key` is the runner's checkpoint key: the projection's [`name`](Projection::name),
    /// or `name#index/count` for a runner restricted to one
    /// [`Partition`](crate::Partition). Partitions of one projection advance separately, so
    /// each needs a checkpoint of its own.
    fn load_checkpoint(
        &mut self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Position>, Self::Error>> + Send {
        let _ = key;
        ready(Ok(None))
    }

    /// The position committed under `key`, read for a runner standing by while another
    /// instance holds the lease: it shows in the runner's status, so that callers waiting
    /// to read their own writes on this instance see the shared read model's progress.
    ///
    /// It must have no effect beyond the read: the instance may never take the lease, and
    /// another instance is committing meanwhile. By default it is
    /// [`load_checkpoint`](Projection::load_checkpoint); override it when loading prepares
    /// anything (applies migrations, sets the position a commit is fenced on).
    fn committed_checkpoint(
        &mut self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Position>, Self::Error>> + Send {
        self.load_checkpoint(key)
    }

    /// Makes the writes of the events handled since the last commit durable, together with
    /// `position` as the checkpoint under `key` if the projection keeps its own (`key` as
    /// in [`load_checkpoint`](Projection::load_checkpoint)). Projections that buffer writes
    /// flush them here; the runner saves its checkpoint only after this succeeds.
    ///
    /// A projection that keeps its own checkpoint must refuse (with an error) to commit if
    /// its stored checkpoint is no longer the one it loaded or last committed: another
    /// instance moved on, and this one's batch is a duplicate.
    fn commit(
        &mut self,
        key: &str,
        position: Position,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = (key, position);
        ready(Ok(()))
    }

    /// Drops the writes of the events handled since the last commit, after a failure.
    fn rollback(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        ready(Ok(()))
    }
}
