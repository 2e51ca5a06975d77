use es_core::{DomainEvent, RawEvent, UpcastError};

fn shipped_v2(event: RawEvent) -> Result<RawEvent, UpcastError> {
    Ok(event)
}

#[derive(Debug, Clone, DomainEvent)]
enum OrderEvent {
    // A step reads an older version; version 2 is the current one.
    #[event(version = 2, upcast(from = 2, with = shipped_v2))]
    Shipped { carrier: String },
}

fn main() {}
