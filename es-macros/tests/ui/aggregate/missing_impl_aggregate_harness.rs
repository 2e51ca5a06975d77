use es_core::{AggregateType, DomainEvent};

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum OrderEvent {
    Placed { customer: String },
}

#[derive(Debug, Clone)]
enum OrderCommand {
    Place { customer: String },
}

#[derive(Debug, thiserror::Error)]
#[error("the order is already placed")]
struct OrderError;

#[derive(Debug, Default, AggregateType)]
#[aggregate(name = "order", command = OrderCommand, event = OrderEvent, error = OrderError)]
struct Order {
    placed: bool,
}

// `impl Aggregate for Order` was forgotten.

fn main() {
    use es_core::prelude::*;

    Order::test()
        .given_no_previous_events()
        .when(OrderCommand::Place { customer: "ada".into() })
        .then_expect_events([OrderEvent::Placed { customer: "ada".into() }]);
}
