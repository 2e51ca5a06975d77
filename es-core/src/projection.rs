//! Projections: folding events into query-optimised read models.
//!
//! A [`Projection`] handles envelopes in log order. Test one with
//! [`ProjectionFixture`](crate::testing::ProjectionFixture) (feature `testing`).

use std::future::Future;

use crate::event::{DomainEvent, EventEnvelope};

/// A read model built from events.
///
/// [`handle`](Projection::handle) sees each selected event once, in global log order, with
/// its envelope (stream, version, position, time, metadata). It must be idempotent per event
/// where its storage cannot commit the checkpoint atomically with its writes.
///
/// ```
/// use es_core::{DomainEvent, EventEnvelope, Projection};
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
/// use es_core::{EventStore, ExpectedVersion, EventFilter, NewEvent, Position, StreamId};
/// use futures_util::TryStreamExt;
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
/// let mut view = OpenOrders::default();
/// let mut log = std::pin::pin!(store.read_all::<OrderEvent>(Position::START, EventFilter::all()));
/// while let Some(envelope) = log.try_next().await? {
///     view.handle(&envelope).await?;
/// }
/// assert_eq!(view.open.into_iter().collect::<Vec<_>>(), [("1".to_owned(), 500)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Projection: Send {
    /// The events it reads.
    type Event: DomainEvent;

    /// Why handling an event failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Updates the read model with one event.
    fn handle(
        &mut self,
        envelope: &EventEnvelope<Self::Event>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
