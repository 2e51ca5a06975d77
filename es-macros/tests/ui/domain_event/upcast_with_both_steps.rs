use es_core::{DomainEvent, RawEvent, UpcastError};

fn shipped_v1(event: RawEvent) -> Result<RawEvent, UpcastError> {
    Ok(event)
}

#[derive(serde::Deserialize)]
struct ShippedV1 {
    by: String,
}

#[derive(Debug, Clone, DomainEvent)]
enum OrderEvent {
    #[event(version = 2, upcast(from = 1, with = shipped_v1, typed = ShippedV1))]
    Shipped { carrier: String },
}

fn main() {}
