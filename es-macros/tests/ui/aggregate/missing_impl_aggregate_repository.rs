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

async fn place<S>(orders: &es_core::Repository<Order, S>)
where
    S: es_core::EventStore + es_core::SnapshotStore,
{
    let _ = orders
        .execute("42", OrderCommand::Place { customer: "ada".into() })
        .await;
}

fn main() {}
