use es_core::DomainEvent;

// The stored event type name comes from `#[event(name)]`, not from serde.
#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    #[serde(rename = "account_opened")]
    Opened { owner: String },
}

fn main() {}
