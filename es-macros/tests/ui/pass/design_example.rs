// The experience promised in DESIGN.md, verbatim apart from the command and error types it
// leaves out: serde derives on the enum alongside `DomainEvent` are fine.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub enum OrderEvent {
    #[event(name = "OrderNew")]             Placed { customer: String, total_cents: i64 },
    #[event(name = "OrderPaymentReceived")] Paid { amount_cents: i64 },
    #[event(name = "OrderShipped", version = 2)] Shipped { carrier: String },
}

#[derive(Debug, Clone)]
pub enum OrderCommand {
    Ship { carrier: String },
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum OrderError {
    #[error("the order is not paid")]
    NotPaid,
}

#[derive(Debug, Default, Serialize, Deserialize)]
enum Status {
    #[default]
    New,
    Paid,
}

#[derive(Debug, Default, Serialize, Deserialize, AggregateType)]
#[aggregate(name = "order", command = OrderCommand, event = OrderEvent, error = OrderError)]
pub struct Order { status: Status, paid_cents: i64 }

impl Aggregate for Order {
    async fn handle(&self, command: OrderCommand, _: &()) -> Result<Vec<OrderEvent>, OrderError> {
        match (&self.status, command) {
            (Status::Paid, OrderCommand::Ship { carrier }) => Ok(vec![OrderEvent::Shipped { carrier }]),
            (Status::New, OrderCommand::Ship { .. }) => Err(OrderError::NotPaid),
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed { .. } | OrderEvent::Shipped { .. } => {}
            OrderEvent::Paid { amount_cents } => {
                self.status = Status::Paid;
                self.paid_cents += amount_cents;
            }
        }
    }
}

fn main() {
    Order::test()
        .given([OrderEvent::Placed { customer: "ada".into(), total_cents: 500 }])
        .when(OrderCommand::Ship { carrier: "ups".into() })
        .then_expect_error(OrderError::NotPaid);
    assert_eq!(OrderEvent::EVENT_TYPES, ["OrderNew", "OrderPaymentReceived", "OrderShipped"]);
}
