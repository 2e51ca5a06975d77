use es_core::DomainEvent;

// Not even serde's syntax: refused as a whole.
#[derive(Debug, Clone, DomainEvent)]
#[serde = "camelCase"]
enum AccountEvent {
    Opened { owner: String },
}

fn main() {}
