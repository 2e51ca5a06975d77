//! The read model in process memory, for the in-memory store.
//!
//! Each order's row is its aggregate state folded by the domain's own
//! [`apply`](es_core::Aggregate::apply), so the read model and the aggregate cannot disagree
//! on what an event does to an order's status.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, PoisonError, RwLock};

use es_core::{Aggregate as _, EventEnvelope, EventFilter, Projection, Version};
use orders::{Order, OrderEvent};

use crate::api::{OrderRow, Status};

/// The orders by id, with the version each includes; shared between the projection the
/// runner drives and the handlers that read it.
#[derive(Debug, Clone, Default)]
pub struct MemoryOrderList {
    orders: Arc<RwLock<BTreeMap<String, (Order, Version)>>>,
}

impl MemoryOrderList {
    /// Up to `limit` orders by id, those in `status` only if given.
    pub fn list(&self, status: Option<Status>, limit: usize) -> Vec<OrderRow> {
        let orders = self.orders.read().unwrap_or_else(PoisonError::into_inner);
        orders
            .iter()
            .filter_map(|(id, (order, version))| {
                let row_status = Status::of(order.status)?;
                status
                    .is_none_or(|wanted| wanted == row_status)
                    .then(|| OrderRow {
                        order_id: id.clone(),
                        customer: order.customer.clone(),
                        status: row_status,
                        total_cents: order.total_cents,
                        paid_cents: order.paid_cents,
                        version: version.get(),
                    })
            })
            .take(limit)
            .collect()
    }
}

impl Projection for MemoryOrderList {
    type Event = OrderEvent;
    type Error = Infallible;

    fn name(&self) -> &str {
        super::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::for_aggregate::<Order>()
    }

    async fn handle(&mut self, envelope: &EventEnvelope<OrderEvent>) -> Result<(), Infallible> {
        let mut orders = self.orders.write().unwrap_or_else(PoisonError::into_inner);
        let (order, version) = orders
            .entry(envelope.stream_id.id().to_owned())
            .or_default();
        // An event handled before (a replay) must not be applied twice.
        if envelope.version > *version {
            order.apply(&envelope.event);
            *version = envelope.version;
        }
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), Infallible> {
        self.orders
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        Ok(())
    }
}
