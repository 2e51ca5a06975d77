use es_core::{DomainEvent, RawEvent, UpcastError};

fn shipped_v1(event: RawEvent) -> Result<RawEvent, UpcastError> {
    Ok(event)
}

#[derive(Debug, Clone, DomainEvent)]
enum OrderEvent {
    #[event(version = 2, upcast(from = 1, wiht = shipped_v1))]
    Shipped { carrier: String },
}

fn main() {}
