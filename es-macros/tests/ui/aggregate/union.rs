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

#[derive(Clone, Copy, AggregateType)]
#[aggregate(name = "bits", command = OrderCommand, event = OrderEvent, error = OrderError)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
