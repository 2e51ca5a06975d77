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
#[aggregate(name = "order", command = OrderCommand, error = OrderError)]
struct Order {
    placed: bool,
}

fn main() {}
