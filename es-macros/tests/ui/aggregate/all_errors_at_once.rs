// Every mistake in one input is reported in one compile, each at its own tokens, and the
// stub impl keeps `uses_it` free of follow-up errors.
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
#[aggregate(name = "order line", command = OrderCommand, event = OrderEvent, eror = OrderError)]
#[aggregate(snapshot_version = -1, command = OrderCommand)]
struct Order {
    placed: bool,
}

fn uses_it<A: AggregateType>() {}

fn main() {
    uses_it::<Order>();
}
