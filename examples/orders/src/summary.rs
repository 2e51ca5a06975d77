//! A read model of all orders, built from the global log.

use std::collections::BTreeMap;
use std::convert::Infallible;

use es_core::{EventEnvelope, EventFilter, Projection};

use crate::order::{OrderEvent, OrderStatus};

/// One order as the read model shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    /// Who ordered.
    pub customer: String,
    /// Where the order is.
    pub status: OrderStatus,
    /// The amount due in all, in cents.
    pub total_cents: i64,
    /// What has been paid, in cents.
    pub paid_cents: i64,
}

/// Every order's summary by order id, and the revenue received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderSummaries {
    /// Summaries by order id.
    pub orders: BTreeMap<String, OrderSummary>,
    /// All payments received, in cents.
    pub revenue_cents: i64,
}

impl Projection for OrderSummaries {
    type Event = OrderEvent;
    type Error = Infallible;

    fn name(&self) -> &str {
        "order-summaries"
    }

    fn filter(&self) -> EventFilter {
        EventFilter::for_aggregate::<crate::order::Order>()
    }

    async fn handle(&mut self, envelope: &EventEnvelope<OrderEvent>) -> Result<(), Infallible> {
        let id = envelope.stream_id.id();
        match &envelope.event {
            OrderEvent::Placed {
                customer,
                total_cents,
                ..
            } => {
                self.orders.insert(
                    id.to_owned(),
                    OrderSummary {
                        customer: customer.clone(),
                        status: OrderStatus::Placed,
                        total_cents: *total_cents,
                        paid_cents: 0,
                    },
                );
            }
            OrderEvent::PaymentReceived { amount_cents, .. } => {
                self.revenue_cents += amount_cents;
                if let Some(order) = self.orders.get_mut(id) {
                    order.paid_cents += amount_cents;
                    if order.paid_cents >= order.total_cents {
                        order.status = OrderStatus::Paid;
                    }
                }
            }
            OrderEvent::Preparing { .. } => self.set_status(id, OrderStatus::Preparing),
            OrderEvent::Shipped { .. } => self.set_status(id, OrderStatus::Shipped),
        }
        Ok(())
    }
}

impl OrderSummaries {
    fn set_status(&mut self, id: &str, status: OrderStatus) {
        if let Some(order) = self.orders.get_mut(id) {
            order.status = status;
        }
    }
}
