use es_core::DomainEvent;

// An upcast step takes the stored event and returns the next one.
fn shipped_v1(payload: serde_json::Value) -> serde_json::Value {
    payload
}

#[derive(Debug, Clone, DomainEvent)]
enum OrderEvent {
    #[event(version = 2, upcast(from = 1, with = shipped_v1))]
    Shipped { carrier: String },
}

fn main() {}
