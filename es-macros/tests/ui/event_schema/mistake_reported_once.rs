// A mistake in `#[event(...)]` is reported once, by `DomainEvent`, not again by
// `EventSchema`.
use es_core::{DomainEvent, EventSchema};

#[derive(Debug, Clone, DomainEvent, EventSchema)]
enum AccountEvent {
    #[event(name = "")]
    Opened,
}

fn main() {}
