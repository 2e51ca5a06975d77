use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    Tagged(#[serde(default)] Vec<String>),
}

fn main() {}
