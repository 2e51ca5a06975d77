use es_core::DomainEvent;

// A struct event's payload is its own serde encoding, so it needs serde's derives.
#[derive(Debug, Clone, DomainEvent)]
struct AccountOpened {
    owner: String,
}

fn main() {}
