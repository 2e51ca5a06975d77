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
