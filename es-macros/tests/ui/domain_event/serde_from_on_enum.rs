use es_core::DomainEvent;

// Any other container key gets the general advice.
#[derive(Debug, Clone, DomainEvent)]
#[serde(from = "String")]
enum AccountEvent {
    Opened { owner: String },
}

fn main() {}
