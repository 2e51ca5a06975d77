use es_core::{DomainEvent, RawEvent, UpcastError};

fn shipped_v1(event: RawEvent) -> Result<RawEvent, UpcastError> {
    Ok(event)
}

#[derive(Debug, Clone, DomainEvent)]
#[event(upcast(from = 1, with = shipped_v1))]
enum OrderEvent {
    Shipped { carrier: String },
}

fn main() {}
