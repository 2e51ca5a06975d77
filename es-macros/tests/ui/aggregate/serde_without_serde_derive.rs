// The AggregateType derive does not register `serde` as a helper attribute: its snapshots are
// the aggregate's own serde encoding, so serde attributes need serde's derives, and without
// them the compiler refuses the attribute instead of letting it do nothing.
use es_core::{Aggregate, AggregateType, DomainEvent};

#[derive(Debug, Clone, DomainEvent)]
enum CounterEvent {
    Added,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[derive(Debug, Default, AggregateType)]
#[aggregate(name = "counter", command = (), event = CounterEvent, error = Never)]
#[serde(rename_all = "camelCase")]
struct Counter {
    total_count: u64,
}

impl Aggregate for Counter {
    async fn handle(&self, (): (), _: &()) -> Result<Vec<CounterEvent>, Never> {
        Ok(vec![CounterEvent::Added])
    }

    fn apply(&mut self, _: &CounterEvent) {}
}

fn main() {}
