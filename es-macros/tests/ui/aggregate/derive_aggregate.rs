// `Aggregate` is the hand-written trait; deriving it points to the derive that exists.
use es_core::{Aggregate, DomainEvent};

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum OrderEvent {
    Placed,
}

#[derive(Debug, thiserror::Error)]
#[error("rejected")]
struct OrderError;

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "order", command = (), event = OrderEvent, error = OrderError)]
struct Order;

impl Aggregate for Order {
    async fn handle(&self, (): (), _: &()) -> Result<Vec<OrderEvent>, OrderError> {
        Ok(vec![OrderEvent::Placed])
    }

    fn apply(&mut self, _: &OrderEvent) {}
}

fn main() {}
