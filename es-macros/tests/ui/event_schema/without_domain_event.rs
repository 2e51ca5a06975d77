// `EventSchema` describes what `DomainEvent` stores; without it there is nothing to describe.
use es_core::EventSchema;

#[derive(Debug, Clone, EventSchema)]
enum AccountEvent {
    Opened,
}

fn main() {}
