use es_core::DomainEvent;

#[derive(serde::Deserialize)]
struct ShippedV1 {
    by: String,
}

// Missing: impl From<ShippedV1> for OrderEvent.
#[derive(Debug, Clone, DomainEvent)]
enum OrderEvent {
    #[event(version = 2, upcast(from = 1, typed = ShippedV1))]
    Shipped { carrier: String },
}

fn main() {}
